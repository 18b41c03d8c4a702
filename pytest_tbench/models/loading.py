"""Building or loading a model once per (spec, head, device, dtype), and releasing it after its last item.

Train items are the exception on two counts: their copy holds float32 master weights when the case's dtype is
float16/bfloat16 (the scenario runs autocast in that dtype, as ``Trainer(fp16=True)``/``bf16=True`` do), and a
copy an optimizer stepped on is never handed out again: the next train item of the model loads afresh.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from pytest_tbench.core.axes import ATTN_AUTO, DEVICE_MAP_NONE, QUANT_NONE, TP_NONE
from pytest_tbench.machine.devices import empty_cache, synchronize
from pytest_tbench.models.attention import attention_unsupported_reason
from pytest_tbench.models.families import family_of
from pytest_tbench.models.fit import weights
from pytest_tbench.models.hub import load_failure_hint, pretrained_kwargs
from pytest_tbench.models.placement import is_spread, model_devices, saved_random_weights, spread_kwargs
from pytest_tbench.models.quantization import (
    QuantizationError,
    bitsandbytes_config,
    is_bitsandbytes,
    quantize,
    tensor_bytes,
    tensor_elements,
)
from pytest_tbench.models.registry import BUILTIN_MODELS, CustomModel, ResolvedSpec, resolve

HEADS: dict[str, type | None] = {
    "base": AutoModel,
    "causal-lm": AutoModelForCausalLM,
    "seq2seq-lm": AutoModelForSeq2SeqLM,
    "masked-lm": AutoModelForMaskedLM,
    # The head the architecture trains with, by its family (families.py): causal, seq2seq or masked
    # LM for text, image classification for a vision encoder, CLIP's own contrastive model, CTC for wav2vec2,
    # speech seq2seq for Whisper, image-text-to-text for a vision-language model.
    "lm": None,
    # Task heads, as the seeds' benchmark module picked them for encoders; train items get class-id targets.
    "sequence-classification": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
    "question-answering": AutoModelForQuestionAnswering,
    "image-classification": AutoModelForImageClassification,
}


def head_class(head: str, config: PretrainedConfig) -> Any:
    found = HEADS[head]
    return found if found is not None else family_of(config).lm_class(config)


def _has_head(head: str, config: PretrainedConfig) -> bool:
    mapping = getattr(head_class(head, config), "_model_mapping", None)
    return mapping is None or type(config) in mapping


def head_unsupported_reason(spec: str, head: str, config: PretrainedConfig) -> str | None:
    """Why the architecture has no model class for the head (None: it has one), without loading weights. A
    config with remote code (``auto_map``) names its own classes, which the tables here do not list."""
    if getattr(config, "auto_map", None) or _has_head(head, config):
        return None
    auto = head_class(head, config).__name__
    heads = [name for name in HEADS if _has_head(name, config)]
    return (
        f"{spec} ({config.model_type}, {type(config).__name__}) has no {head!r} head: transformers' {auto} "
        f"has no class for it; its heads here: {', '.join(heads)}"
    )


TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Dtypes that train items run as mixed precision: float32 weights, autocast to the dtype for the compute.
AMP_DTYPES = ("float16", "bfloat16")

# Seeded so that random-weight models are the same in every run.
WEIGHTS_SEED = 0


class ModelLoadError(RuntimeError):
    """The model of a spec could not be built or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ModelKey:
    spec: str
    head: str
    device: str
    dtype: str
    # Training changes the weights, so train items get their own copy and never share with inference.
    train: bool = False
    # Passed to from_pretrained / from_config as ``attn_implementation=``; "auto" passes nothing (the model's
    # own choice, which transformers records in ``config._attn_implementation``).
    attn_implementation: str = ATTN_AUTO
    # torchao's: applied in place after loading; bitsandbytes': while loading (quantization.py).
    quantization: str = QUANT_NONE
    # A model spread over several devices (placement.py): from_pretrained's device_map, or tensor
    # parallel ranks (each rank's process loads its own shard).
    device_map: str = DEVICE_MAP_NONE
    tp: str = TP_NONE

    def load_kwargs(self) -> dict[str, Any]:
        """What from_pretrained / from_config take beyond the weights' dtype."""
        if self.attn_implementation == ATTN_AUTO:
            return {}
        return {"attn_implementation": self.attn_implementation}

    @property
    def spread(self) -> bool:
        """Whether the model is spread over devices (a device map, tensor parallel)."""
        return is_spread(self.device_map, self.tp)

    @property
    def placed_on_load(self) -> bool:
        """Whether from_pretrained places the weights, not ``.to(device)`` after loading: a spread model, and
        bitsandbytes layers, which quantize their weights as they are put on the device."""
        return self.spread or is_bitsandbytes(self.quantization)

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype the weights are loaded in: the case's, except float32 master weights for mixed-precision
        training (pure float16 AdamW underflows its second moment and turns every weight into NaN at once)."""
        if self.train and self.dtype in AMP_DTYPES:
            return torch.float32
        return TORCH_DTYPES[self.dtype]


@dataclass
class LoadedModel:
    model: PreTrainedModel
    config: PretrainedConfig
    load_time_s: float
    num_parameters: int
    parameter_bytes: int
    source: str
    # Set by the train scenario once a step ran: these weights are no longer the model's starting point, so
    # ModelCache.get loads afresh rather than hand them to the next item.
    trained: bool = False
    quantized_layers: int = 0  # linear layers whose weights --tbench-quantization replaced
    # Every device the weights live on (placement.py): more than one for a device-mapped model, whose
    # rounds synchronise and whose memory tracker reads each of them. Empty: the item's device alone.
    devices: tuple[str, ...] = ()


def load_error(resolved: ResolvedSpec, exc: Exception) -> ModelLoadError:
    """The error for a spec that failed to build or load, with the ways to fix it."""
    if resolved.target is not None:
        hint = load_failure_hint(resolved.spec, resolved.target, list(BUILTIN_MODELS))
        return ModelLoadError(f"{hint}\nCause: {type(exc).__name__}: {exc}")
    return ModelLoadError(f"model {resolved.spec!r} ({resolved.describe()}) failed to build: {exc}")


def load_model(resolved: ResolvedSpec, key: ModelKey) -> LoadedModel:
    dtype = key.weights_dtype
    start = time.perf_counter()
    try:
        config = resolved.load_config()
        model_class = head_class(key.head, config)
        model: Any  # transformers' from_* are untyped; the model's own methods are wrapped
        if key.placed_on_load:
            model = _load_placed(resolved, key, model_class, config, dtype)
        elif resolved.make_config is not None:
            torch.manual_seed(WEIGHTS_SEED)
            model = model_class.from_config(config, dtype=dtype, **key.load_kwargs())
        else:
            assert resolved.target is not None
            model = model_class.from_pretrained(
                resolved.target,
                dtype=dtype,
                **key.load_kwargs(),
                **pretrained_kwargs(resolved.target, resolved.trust_remote_code),
            )
        if not key.placed_on_load:
            model.to(key.device)
        model.eval()
        quantized = quantize(model, key.quantization)
        devices = model_devices(model, key.device) if key.spread else ()
        for device in devices or (key.device,):
            synchronize(device)
    except (OSError, ValueError, KeyError) as exc:
        raise load_error(resolved, exc) from exc
    except QuantizationError as exc:
        raise ModelLoadError(str(exc)) from exc
    load_time_s = time.perf_counter() - start
    params = list(model.parameters())
    return LoadedModel(
        model=model,
        config=model.config,
        load_time_s=load_time_s,
        num_parameters=sum(tensor_elements(p) for p in params),
        parameter_bytes=sum(tensor_bytes(p) for p in params),
        source=resolved.describe(),
        quantized_layers=quantized,
        devices=devices,
    )


def _load_placed(
    resolved: ResolvedSpec, key: ModelKey, model_class: Any, config: PretrainedConfig, dtype: torch.dtype
) -> PreTrainedModel:
    """A model from_pretrained spreads over devices, or loads into bitsandbytes layers on the item's device;
    a random-weight model is saved first, as only from_pretrained takes a device map, a tensor-parallel plan
    or a quantization_config."""
    placement: dict[str, Any]
    if key.spread:
        placement = spread_kwargs(key.device_map, key.tp)
    else:
        placement = {
            "quantization_config": bitsandbytes_config(key.quantization, dtype),
            "device_map": {"": key.device},
        }
    kwargs = {"dtype": dtype, **key.load_kwargs(), **placement}
    if resolved.make_config is None:
        assert resolved.target is not None
        return model_class.from_pretrained(  # type: ignore[no-any-return]
            resolved.target, **kwargs, **pretrained_kwargs(resolved.target, resolved.trust_remote_code)
        )
    with saved_random_weights(model_class, config, dtype, WEIGHTS_SEED) as folder:
        return model_class.from_pretrained(folder, **kwargs, local_files_only=True)  # type: ignore[no-any-return]


def collect(devices: Sequence[str]) -> None:
    """Free what a released model held: its cycles collected, then each device's cached blocks handed back."""
    gc.collect()
    for device in devices:
        empty_cache(device)


class ModelCache:
    """Holds loaded models, and load failures so that each failing spec costs its time once per session."""

    def __init__(self, custom_models: Mapping[str, CustomModel], trust_remote_code: bool = False) -> None:
        self._custom = custom_models
        self._trust_remote_code = trust_remote_code
        self._loaded: dict[ModelKey, LoadedModel | ModelLoadError] = {}
        self._configs: dict[str, PretrainedConfig | ModelLoadError] = {}
        self._attention: dict[tuple[str, str, str, str, str], str | None] = {}
        self._weights: dict[tuple[str, str, torch.dtype, str], tuple[int, int] | None] = {}

    def release_others(self, key: ModelKey) -> None:
        """Release every loaded model but ``key``'s: for a process that cannot know an item is the last of its
        model (a pytest-xdist worker is handed items as it goes), one model stays loaded at a time."""
        for other in [k for k in self._loaded if k != key]:
            self.release(other)

    def resolve(self, spec: str) -> ResolvedSpec:
        return resolve(spec, self._custom, self._trust_remote_code)

    def config(self, spec: str) -> PretrainedConfig:
        """The model's config alone (cheap), for skip decisions before any weights are touched."""
        if spec not in self._configs:
            resolved = self.resolve(spec)
            try:
                self._configs[spec] = resolved.load_config()
            except (OSError, ValueError, KeyError) as exc:
                self._configs[spec] = load_error(resolved, exc)
        found = self._configs[spec]
        if isinstance(found, ModelLoadError):
            raise found
        return found

    def attention_reason(self, key: ModelKey) -> str | None:
        """Why the key's model cannot run its attention implementation on its device and dtype (None: it
        can), checked once per model, head, implementation, device and dtype without loading weights."""
        if key.attn_implementation == ATTN_AUTO:
            return None
        cache_key = (key.spec, key.head, key.attn_implementation, key.device, key.dtype)
        if cache_key not in self._attention:
            config = self.config(key.spec)
            self._attention[cache_key] = attention_unsupported_reason(
                head_class(key.head, config), config, key.attn_implementation, key.device, key.dtype
            )
        return self._attention[cache_key]

    def weights_estimate(self, key: ModelKey) -> tuple[int, int] | None:
        """(parameters, bytes) of the key's model from its config alone (fit.py); None where the
        model cannot be built on the meta device (its load will say why, or succeed regardless)."""
        cache_key = (key.spec, key.head, key.weights_dtype, key.quantization)
        if cache_key not in self._weights:
            config = self.config(key.spec)
            try:
                found = weights(head_class(key.head, config), config, key.weights_dtype, key.quantization)
            except Exception:  # any failure of a third-party build means "no estimate", never a failed item
                found = None
            self._weights[cache_key] = found
        return self._weights[cache_key]

    def is_loaded(self, key: ModelKey) -> bool:
        return isinstance(self._loaded.get(key), LoadedModel)

    def get(self, key: ModelKey) -> LoadedModel:
        if self._trained(key):
            # Released before the new load, so that the next item's peak memory holds one copy, its own.
            # Random-weight models are seeded and hub models read from disk: the fresh copy is the same start.
            self.release(key)
        if key not in self._loaded:
            try:
                self._loaded[key] = load_model(self.resolve(key.spec), key)
            except ModelLoadError as exc:
                self._loaded[key] = exc
        found = self._loaded[key]
        if isinstance(found, ModelLoadError):
            raise found
        return found

    def _trained(self, key: ModelKey) -> bool:
        # A method of its own so that no local of get() keeps the old copy alive through release().
        entry = self._loaded.get(key)
        return isinstance(entry, LoadedModel) and entry.trained

    def release(self, key: ModelKey) -> None:
        entry = self._loaded.get(key)
        if isinstance(entry, LoadedModel):
            devices = entry.devices or (
                key.device,
            )  # a device-mapped model's blocks are on every GPU it used
            del self._loaded[key]
            del entry
            collect(devices)

    def release_all(self) -> None:
        for key in list(self._loaded):
            self.release(key)
