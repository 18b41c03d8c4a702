"""The settings of a generate call, as the user gave them, turned into the generation config it runs with.

transformers fills every value a passed ``GenerationConfig`` leaves unset (``None``) from the model's own
``generation_config`` (``_prepare_generation_config``), so a checkpoint's ``num_beams``,
``repetition_penalty``, ``no_repeat_ngram_size``, ``top_k`` ... would apply even to an explicit config. The
plugin therefore builds the whole config here, and the scenario installs it as the model's config for the item
(see ``scenarios/generate.py``), so that only these values and transformers' global defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import CompileConfig, GenerationConfig, PretrainedConfig

from pytest_tbench.core.axes import COMPILE_OFF


@dataclass(frozen=True)
class GenerateSettings:
    new_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    use_cache: bool = True
    cache_implementation: str | None = None
    # --tbench-compile: the torch.compile mode of the decode step, or off (the item's, not the session's).
    compile: str = COMPILE_OFF

    @property
    def sampling(self) -> bool:
        return self.temperature is not None or self.top_p is not None

    def generation_values(
        self, config: PretrainedConfig, model_generation: GenerationConfig | None
    ) -> dict[str, Any]:
        """Every value the plugin sets, JSON-ready (they are recorded in extra_info as ``generation_config``).

        Token ids come from the model (its generation config, else its config): they name its vocabulary and
        do not change how tokens are chosen. Everything that chooses tokens is set here.
        """
        values: dict[str, Any] = {
            "max_new_tokens": self.new_tokens,
            "min_new_tokens": self.new_tokens,  # EOS cannot end a round early
            "do_sample": self.sampling,
            "num_beams": 1,
            "num_return_sequences": 1,
            "use_cache": self.use_cache,
            "pad_token_id": _pad_token_id(config),
        }
        if self.sampling:
            values["temperature"] = 1.0 if self.temperature is None else self.temperature
            values["top_p"] = 1.0 if self.top_p is None else self.top_p
            values["top_k"] = 0  # off: transformers would otherwise keep the 50 likeliest tokens
        for name in ("bos_token_id", "eos_token_id"):
            token = _token_id(name, config, model_generation)
            if token is not None:
                values[name] = token
        if config.is_encoder_decoder:
            start = _token_id("decoder_start_token_id", config, model_generation)
            if start is None and values.get("bos_token_id") is None:
                start = values["pad_token_id"]  # what T5-style checkpoints use
            if start is not None:
                values["decoder_start_token_id"] = start
        if self.cache_implementation is not None:
            values["cache_implementation"] = self.cache_implementation
        compile_config = self.compile_config()
        if compile_config is not None:
            # transformers compiles the decode step only over a compilable cache (scenarios.generate skips a
            # compiled item with another cache).
            values["cache_implementation"] = self.cache_implementation or "static"
            values["compile_config"] = {
                key: value if isinstance(value, (str, int, float, bool)) else str(value)
                for key, value in compile_config.to_dict().items()
                if value is not None
            }
        return values

    def compile_config(self) -> CompileConfig | None:
        """What generate compiles its decode step with under --tbench-compile: the mode asked for, the rest
        transformers' defaults (no fullgraph, inductor). transformers compiles on its own only on CUDA, XPU
        and a few accelerators (``_valid_auto_compile_criteria``); ``_compile_all_devices`` is its switch for
        every device, so a compiled item compiles on CPU too, by the same path."""
        if self.compile == COMPILE_OFF:
            return None
        compile_config = CompileConfig(mode=self.compile)
        compile_config._compile_all_devices = True  # type: ignore[assignment]  # declared None, read as a flag
        return compile_config

    def generation_config(
        self, config: PretrainedConfig, model_generation: GenerationConfig | None
    ) -> GenerationConfig:
        values = self.generation_values(config, model_generation)
        values.pop("compile_config", None)  # its recorded (JSON) form; the config takes the object
        return GenerationConfig(**values, compile_config=self.compile_config())


def _token_id(
    name: str, config: PretrainedConfig, model_generation: GenerationConfig | None
) -> int | list[int] | None:
    for source in (model_generation, config):
        value = getattr(source, name, None) if source is not None else None
        if isinstance(value, int) or (isinstance(value, list) and value):
            return value
    return None


def _pad_token_id(config: PretrainedConfig) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0
