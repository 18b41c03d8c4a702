"""One benchmark item's coordinates, and the sweep that expands settings into items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        return f"{label}-b{self.batch_size}-s{self.seq_len}{new}-{self.device}-{self.dtype}"

    @property
    def model_key(self) -> ModelKey:
        mode = MODES.get(self.mode)
        return ModelKey(
            self.model, self.head, self.device, self.dtype, train=mode is not None and mode.own_model
        )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BenchCase:
        return cls(**params)


def build_cases(config: TBenchConfig, mode: str, head: str) -> list[BenchCase]:
    """Items model by model, so that each model is loaded once and released before the next."""
    devices = dict.fromkeys(resolve_device(d) for d in config.devices)
    new_tokens = config.new_tokens if generates(mode) else 0
    return [
        BenchCase(mode, model, head, batch, seq, device, dtype, new_tokens)
        for model in config.models
        for device in devices
        for dtype in dict.fromkeys(resolve_dtype(d, device) for d in config.dtype)
        for batch in config.batch_sizes
        for seq in config.seq_lens
    ]
