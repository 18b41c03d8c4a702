"""One benchmark item's coordinates, and the sweep that expands settings into items."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

from pytest_tbench.core.axes import AXES
from pytest_tbench.core.case_id import case_id
from pytest_tbench.core.modes import MODES, generates
from pytest_tbench.core.record import Case
from pytest_tbench.machine.devices import resolve_device, resolve_dtype
from pytest_tbench.models.families import TEXT, Family, family_of
from pytest_tbench.models.loading import ModelCache, ModelKey, ModelLoadError
from pytest_tbench.models.registry import resolve
from pytest_tbench.settings.config import TBenchConfig


@dataclass(frozen=True)
class BenchCase(Case):
    """A case this session runs: its id and the model it loads."""

    @property
    def id(self) -> str:
        label = resolve(self.model).label if "/" in self.model or "\\" in self.model else self.model
        return case_id(self, label)

    @property
    def model_key(self) -> ModelKey:
        mode = MODES.get(self.mode)
        return ModelKey(
            self.model,
            self.head,
            self.device,
            self.dtype,
            train=mode is not None and mode.own_model,
            attn_implementation=self.attn_implementation,
            quantization=self.quantization,
            device_map=self.device_map,
            tp=self.tp,
        )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BenchCase:
        return cls(**params)


ConfigReader = Callable[[str], PretrainedConfig]


def model_family(spec: str, read_config: ConfigReader) -> tuple[Family, PretrainedConfig | None]:
    """The family of a spec's model, from its config; a spec whose config cannot be read is text, so that
    its items exist and fail at setup with the load error's hint."""
    try:
        model_config = read_config(spec)
    except ModelLoadError:
        return TEXT, None
    return family_of(model_config), model_config


def build_cases(
    config: TBenchConfig, mode: str, head: str, read_config: ConfigReader | None = None
) -> list[BenchCase]:
    """Items model by model, so that each model is loaded once and released before the next; within a model,
    variant by variant (axes that change the loaded model outermost), each over every shape. The length axis
    is expanded only for a model whose family has a token axis (``models/families.py``); ``read_config``
    reads a spec's config (the session's ModelCache.config; by default a cache of this call's own)."""
    read_config = read_config or ModelCache(config.sweep.custom_models, config.run.trust_remote_code).config
    devices = dict.fromkeys(resolve_device(d) for d in config.sweep.devices)
    new_tokens = config.sweep.new_tokens if generates(mode) else 0
    axes = sorted(AXES, key=lambda axis: not axis.loads_model)  # stable: table order otherwise
    variants = [
        dict(zip((a.key for a in axes), values, strict=True))
        for values in itertools.product(*(dict.fromkeys(config.value(a.key)) for a in axes))
    ]
    cases = []
    for model in config.sweep.models:
        family, model_config = model_family(model, read_config)
        media = family.media(model_config) if model_config is not None else ""
        seq_lens = config.sweep.seq_lens if family.token_axis else (0,)
        cases += [
            BenchCase(mode, model, head, batch, seq, device, dtype, new_tokens, **variant, media=media)
            for device in devices
            for dtype in dict.fromkeys(resolve_dtype(d, device) for d in config.sweep.dtype)
            for variant in variants
            for batch in config.sweep.batch_sizes
            for seq in seq_lens
        ]
    return cases
