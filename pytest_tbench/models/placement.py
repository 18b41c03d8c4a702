"""Models larger than one GPU: where a ``device_map`` put the modules, which devices a model touches, and the
``from_pretrained`` arguments of a spread model (``device_map=`` for accelerate's big-model dispatch,
``distributed_config=`` for tensor parallel).

Both only exist in ``from_pretrained`` (``from_config`` takes neither), so a random-weight model is built once
from its seeded config and saved to a temporary folder, which the spread load then reads like a Hub model.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from pytest_tbench.core.axes import DEVICE_MAP_NONE, TP_NONE
from pytest_tbench.machine.devices import is_cuda

MULTI_GPU_EXTRA = "pip install 'pytest-tbench[multi-gpu]'"


def spread_kwargs(device_map: str, tp: str) -> dict[str, Any]:
    """What from_pretrained takes to spread the model: nothing for a model on one device."""
    if device_map != DEVICE_MAP_NONE:
        return {"device_map": device_map}
    if tp != TP_NONE:
        from transformers.distributed import DistributedConfig

        # The world size comes from the launcher's environment (WORLD_SIZE): tp_size is left to transformers.
        return {"distributed_config": DistributedConfig(tp_plan="auto")}
    return {}


def is_spread(device_map: str, tp: str) -> bool:
    return device_map != DEVICE_MAP_NONE or tp != TP_NONE


def device_name(placed: int | str | torch.device) -> str:
    """A device map's value as a device name: accelerate writes a GPU as its ordinal."""
    if isinstance(placed, int):
        return f"cuda:{placed}"
    return str(placed)


def model_devices(model: torch.nn.Module, default: str) -> tuple[str, ...]:
    """Every device the model's weights live on, GPUs in ordinal order first: from accelerate's
    ``hf_device_map`` where dispatch set one (it sets none when everything went to one device), else from
    the parameters. ``disk`` (offloaded weights) is no device a call runs on. ``default`` when the model has
    no parameters at all."""
    device_map: Mapping[str, Any] | None = getattr(model, "hf_device_map", None)
    if device_map:
        names = {device_name(placed) for placed in device_map.values()} - {"disk"}
    else:
        names = {str(p.device) for p in model.parameters()}
    return tuple(sorted(names, key=_device_order)) or (default,)


def _device_order(name: str) -> tuple[int, int]:
    if is_cuda(name):
        index = torch.device(name).index
        return (0, index if index is not None else 0)
    return (1, 0)


def placement_summary(model: torch.nn.Module) -> dict[str, int]:
    """Modules per device as the device map placed them (``{"cuda:0": 14, "cuda:1": 13, "cpu": 2}``); empty
    for a model without a map."""
    device_map: Mapping[str, Any] | None = getattr(model, "hf_device_map", None)
    if not device_map:
        return {}
    counts = Counter(device_name(placed) for placed in device_map.values())
    return {name: counts[name] for name in sorted(counts, key=_device_order)}


def accelerate_missing_reason() -> str | None:
    """Why --tbench-device-map cannot load here (accelerate, which transformers dispatches with, is not
    installed), or None."""
    if importlib.util.find_spec("accelerate") is None:
        return f"--tbench-device-map needs accelerate, which is not installed: {MULTI_GPU_EXTRA}"
    return None


@contextmanager
def saved_random_weights(model_class: Any, config: Any, dtype: torch.dtype, seed: int) -> Iterator[str]:
    """A folder holding the seeded random-weight model of ``config``, for from_pretrained; removed after."""
    with tempfile.TemporaryDirectory(prefix="tbench-weights-") as folder:
        torch.manual_seed(seed)
        model = model_class.from_config(config, dtype=dtype)
        model.save_pretrained(folder)
        del model
        yield folder


def spread_unsupported_reason(
    spec: str, config: Any, device: str, device_map: str, tp: str, quantization: str, backend: str
) -> str | None:
    """Why a spread item (--tbench-device-map, --tbench-tp) cannot run here, or None; asked of the config
    and the visible devices alone (``torch.cuda.device_count`` opens no CUDA context)."""
    if device_map != DEVICE_MAP_NONE and tp != TP_NONE:
        return (
            "--tbench-device-map and --tbench-tp are exclusive: transformers spreads a model one way or the "
            "other"
        )
    if device_map != DEVICE_MAP_NONE:
        if not is_cuda(device):
            # accelerate's map on a CPU-only item puts every module on the CPU: the plain cpu item, under an
            # id that would claim a spread measurement.
            return (
                f"--tbench-device-map {device_map} spreads a model over GPUs; on {device} every module stays "
                "on the CPU, which is the plain cpu item: use --tbench-devices cuda"
            )
        return accelerate_missing_reason()
    if tp == TP_NONE:
        return None
    ranks = int(tp)
    if not getattr(config, "base_model_tp_plan", None):
        return (
            f"{spec} ({config.model_type}) has no tensor-parallel plan in this transformers (its config's "
            "base_model_tp_plan is empty), so tp_plan='auto' cannot shard it"
        )
    if quantization != "none" or backend != "pytorch":
        what = f"--tbench-quantization {quantization}" if quantization != "none" else f"backend {backend}"
        return f"{what} does not run on tensor-parallel shards (DTensor weights): drop it or --tbench-tp"
    if is_cuda(device):
        count = torch.cuda.device_count()
        if ranks > count:
            return f"--tbench-tp {ranks} needs {ranks} GPUs (one a rank); {count} visible"
    return None
