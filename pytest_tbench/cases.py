"""One benchmark item's coordinates, and the sweep that expands settings into items."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .axes import AXES, variant_id
from .config import TBenchConfig
from .devices import resolve_device, resolve_dtype
from .models.loading import ModelKey
from .models.registry import resolve
from .modes import MODES, generates
from .record import Case


@dataclass(frozen=True)
class BenchCase(Case):
    """A case this session runs: its id and the model it loads."""

    @property
    def id(self) -> str:
        label = resolve(self.model).label if "/" in self.model or "\\" in self.model else self.model
        new = f"-n{self.new_tokens}" if self.new_tokens else ""
        variant = variant_id(vars(self))
        return f"{label}-b{self.batch_size}-s{self.seq_len}{new}-{self.device}-{self.dtype}{variant}"

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
        )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BenchCase:
        return cls(**params)


def build_cases(config: TBenchConfig, mode: str, head: str) -> list[BenchCase]:
    """Items model by model, so that each model is loaded once and released before the next; within a model,
    variant by variant (axes that change the loaded model outermost), each over every shape."""
    devices = dict.fromkeys(resolve_device(d) for d in config.devices)
    new_tokens = config.new_tokens if generates(mode) else 0
    axes = sorted(AXES, key=lambda axis: not axis.loads_model)  # stable: table order otherwise
    variants = [
        dict(zip((a.key for a in axes), values, strict=True))
        for values in itertools.product(*(dict.fromkeys(getattr(config, a.key)) for a in axes))
    ]
    return [
        BenchCase(mode, model, head, batch, seq, device, dtype, new_tokens, **variant)
        for model in config.models
        for device in devices
        for dtype in dict.fromkeys(resolve_dtype(d, device) for d in config.dtype)
        for variant in variants
        for batch in config.batch_sizes
        for seq in config.seq_lens
    ]
