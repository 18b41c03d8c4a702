"""Attention implementations: the names the installed transformers knows, and whether a model can run one on
an item's device and dtype, in transformers' own words.

transformers checks a requested ``attn_implementation`` when the model is built (``PreTrainedModel.__init__``
runs ``_check_and_adjust_attn_implementation``): whether the architecture supports it, whether its package
(flash-attn, or the ``kernels`` fallback) is installed. Building the model on the meta device runs exactly
that check without allocating a weight, so an item that cannot run its implementation is skipped with
transformers' reason before anything is loaded, in the pytest process even when the item would run in a
worker. Two things transformers only warns about at build time and its kernel then raises for are checked
here: flash attention on a device it has no build for, and flash attention in float32.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from transformers import PretrainedConfig

from pytest_tbench.core.axes import ATTN_AUTO

# What the registry holds that is no choice for a benchmark item: the paged cache's implementation of
# continuous batching, which generate and forward do not use.
_NOT_CHOICES = re.compile(r"\|")
_FLASH = re.compile(r"^flash_attention_(\d+)$")


def attention_choices() -> tuple[str, ...]:
    """``auto`` (the model's own choice), ``eager``, and every implementation in transformers' attention
    registry (``AttentionInterface``), as the installed version has them."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    registered = [name for name in ALL_ATTENTION_FUNCTIONS.valid_keys() if not _NOT_CHOICES.search(name)]
    return (ATTN_AUTO, "eager", *dict.fromkeys(sorted(registered)))


def _flash_devices(version: int) -> tuple[str, ...]:
    from transformers.modeling_flash_attention_utils import FLASH_ATTENTION_COMPATIBILITY_MATRIX

    entry: dict[str, Any] = FLASH_ATTENTION_COMPATIBILITY_MATRIX.get(version, {})
    return tuple(name for _, name in entry.get("supported_devices", ()))


def attention_unsupported_reason(
    model_class: Any, config: PretrainedConfig, implementation: str, device: str, dtype: str
) -> str | None:
    """Why ``model_class`` built from ``config`` cannot run ``implementation`` on ``device`` in ``dtype``
    (a case's dtype name), or None where it can."""
    if implementation == ATTN_AUTO:
        return None
    flash = _FLASH.match(implementation)
    if flash:
        devices = _flash_devices(int(flash.group(1)))
        device_type = torch.device(device).type
        if devices and device_type not in devices:
            return (
                f"attn_implementation {implementation} runs on {', '.join(devices)} (transformers' "
                f"FLASH_ATTENTION_COMPATIBILITY_MATRIX), not on {device}"
            )
        if dtype == "float32":
            return (
                f"attn_implementation {implementation} runs in float16 or bfloat16 only (transformers warns "
                "and the flash kernel raises for float32); use --tbench-dtype float16 or bfloat16"
            )
    # An Auto class (what the loader uses) builds through from_config, a model class through _from_config.
    build = getattr(model_class, "from_config", None) or model_class._from_config
    try:
        with torch.device("meta"):
            # A copy: from_config writes the implementation into the config it is given, and the session's
            # configs are shared between items.
            build(copy.deepcopy(config), attn_implementation=implementation, dtype=getattr(torch, dtype))
    except (ValueError, ImportError) as exc:
        return f"attn_implementation {implementation} cannot run here: {' '.join(str(exc).split())}"
    return None


def implementation_used(model: torch.nn.Module) -> str | None:
    """The attention implementation the loaded model runs, as transformers resolved it."""
    config = getattr(model, "config", None)
    used = getattr(config, "_attn_implementation", None)
    return str(used) if used is not None else None
