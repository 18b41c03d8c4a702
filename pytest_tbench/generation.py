"""The settings of a generate call, as the user gave them, turned into ``model.generate`` arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig


@dataclass(frozen=True)
class GenerateSettings:
    new_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    use_cache: bool = True
    cache_implementation: str | None = None

    @property
    def sampling(self) -> bool:
        return self.temperature is not None or self.top_p is not None

    def generate_kwargs(self, config: PretrainedConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.new_tokens,
            "min_new_tokens": self.new_tokens,
            "do_sample": self.sampling,
            "use_cache": self.use_cache,
            "pad_token_id": _pad_token_id(config),
        }
        if self.sampling:
            kwargs["temperature"] = 1.0 if self.temperature is None else self.temperature
            kwargs["top_p"] = 1.0 if self.top_p is None else self.top_p
        else:  # explicit, so a checkpoint's sampling defaults do not warn or apply
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if (
            config.is_encoder_decoder
            and config.decoder_start_token_id is None
            and config.bos_token_id is None
        ):
            kwargs["decoder_start_token_id"] = kwargs["pad_token_id"]  # what T5-style checkpoints use
        if self.cache_implementation is not None:
            kwargs["cache_implementation"] = self.cache_implementation
        return kwargs


def _pad_token_id(config: PretrainedConfig) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0
