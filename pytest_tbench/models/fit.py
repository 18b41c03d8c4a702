"""Will the item fit? Its memory estimated from the config alone, before any weights exist, and compared with
what the device has free, so that an item too big for the machine skips with the reason instead of taking
the machine into the OOM killer.

The weights are exact: the model is built on the meta device (no memory, no time) and its parameters
counted, in the dtype they load in (float32 master weights for mixed-precision training), int8 or packed
4-bit for the linear layers a quantization replaces. The rest (activations, attention scores, logits, KV
cache, gradients and optimizer state) is a rough estimate from the config's dimensions, documented below; both
are recorded beside the measured peaks (``weights_estimate_bytes`` against ``parameter_bytes``,
``work_estimate_bytes`` against ``peak_memory_increase_bytes``) so the estimate can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psutil
import torch
from transformers import PretrainedConfig

from pytest_tbench.core.axes import QUANT_NONE
from pytest_tbench.models.quantization import is_bitsandbytes

GIB = 1024**3

# Heads whose output is one score per vocabulary entry and position (the logits dominate small models' peak).
_LM_HEADS = ("causal-lm", "seq2seq-lm", "masked-lm", "lm")


@dataclass(frozen=True)
class Dims:
    """The dimensions the activation estimate needs, read from a config under any of its names."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


def _first_int(config: Any, *names: str, default: int = 0) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def dims(config: PretrainedConfig) -> Dims:
    """The config's dimensions; a composite config (CLIP, Whisper's sub-configs, a vision-language model)
    gives its largest part's, which bounds the rest."""
    parts = [config] + [
        sub
        for name in ("text_config", "vision_config", "audio_config")
        if (sub := getattr(config, name, None))
    ]
    found = []
    for part in parts:
        hidden = _first_int(part, "hidden_size", "d_model", "n_embd", "dim")
        heads = _first_int(part, "num_attention_heads", "n_head", "encoder_attention_heads", default=1)
        layers = _first_int(part, "num_hidden_layers", "n_layer", "num_layers") + _first_int(
            part, "decoder_layers", "num_decoder_layers"
        )
        found.append(
            Dims(
                hidden=hidden,
                layers=layers,
                heads=heads,
                kv_heads=_first_int(part, "num_key_value_heads", default=heads),
                intermediate=_first_int(part, "intermediate_size", "n_inner", "d_ff", "ffn_dim", "hidden_dim")
                or 4 * hidden,
                vocab=_first_int(part, "vocab_size"),
            )
        )
    return max(found, key=lambda d: (d.hidden, d.layers))


def _is_matmul(module: torch.nn.Module) -> bool:
    """The layers --tbench-quantization replaces: nn.Linear, and transformers' Conv1D (converted first)."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def weights(
    model_class: Any, config: PretrainedConfig, dtype: torch.dtype, quantization: str
) -> tuple[int, int]:
    """(parameters, bytes) of the model the item loads, built on the meta device: nothing is allocated.
    A tied weight counts once, as ``model.parameters()`` gives it."""
    with torch.device("meta"):
        model = model_class.from_config(config, dtype=dtype)
    kept = _kept_by_bitsandbytes(model) if is_bitsandbytes(quantization) else set()
    # For each parameter: whether a quantizable layer holds it, and whether another module does too.
    holders: dict[int, tuple[torch.nn.Parameter, bool, bool]] = {}
    rows: dict[int, int] = {}  # a quantizable weight's output features (Conv1D holds its weight transposed)
    for module in model.modules():
        for param in module.parameters(recurse=False):
            _, matmul, other = holders.get(id(param), (param, False, False))
            quantizable = _is_matmul(module) and param.dim() == 2 and id(module) not in kept
            holders[id(param)] = (param, matmul or quantizable, other or not quantizable)
            if quantizable:
                rows[id(param)] = param.shape[1] if type(module).__name__ == "Conv1D" else param.shape[0]
    count = size = 0
    for param, matmul, other in holders.values():
        if quantization == QUANT_NONE or not matmul or (other and is_bitsandbytes(quantization)):
            count += param.numel()
            size += param.numel() * param.element_size()
        elif is_bitsandbytes(quantization):
            count += param.numel()
            size += _bitsandbytes_bytes(param.numel(), rows[id(param)], quantization)
        else:
            # An int8 scheme keeps a byte a weight and a scale per output row. A weight tied to an embedding
            # is untied by the quantization: the embedding keeps its own copy in the model's dtype.
            count += param.numel() * (1 + other)
            size += param.numel() + min(param.shape) * param.element_size()
            size += param.numel() * param.element_size() if other else 0
    return count, size


def _kept_by_bitsandbytes(model: torch.nn.Module) -> set[int]:
    """The modules transformers leaves in float when it loads bitsandbytes layers, by its own rule (the output
    embedding, tied weights, the last module); bitsandbytes never unties a weight."""
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    patterns = get_keys_to_not_convert(model)
    return {id(module) for name, module in model.named_modules() if not should_convert_module(name, patterns)}


def _bitsandbytes_bytes(numel: int, rows: int, quantization: str) -> int:
    """A bitsandbytes weight's bytes: LLM.int8() keeps a byte a weight and a float32 scale per output row;
    the 4-bit types pack two weights a byte with a float32 absmax per block of 64 (bitsandbytes' default)."""
    if quantization == "bnb-int8":
        return numel + 4 * rows
    return -(-numel // 2) + 4 * -(-numel // 64)


@dataclass(frozen=True)
class WorkShape:
    """What the item runs: its mode, head, batch and the positions each sample has (tokens, image patches)."""

    mode: str
    head: str
    batch: int
    positions: int
    new_tokens: int
    compute_bytes: int  # bytes per element of the compute dtype


def work_bytes(d: Dims, shape: WorkShape, parameters: int) -> int:
    """Memory the item needs beyond its weights, roughly (checked against measured peaks in the README):

    - inference: one layer's live tensors, B*S*(8H + 2I) (the residual stream, its normed copy, q, k, v, the
      attention output, the MLP's input and its intermediate before and after the activation coexist at a
      layer's peak), plus eager attention scores B*A*S^2 (SDPA needs less), plus the logits B*S*V of an LM
      head (generate keeps the last position's only);
    - generate adds the KV cache, 2*L*B*(S+N)*kv_heads*H/A, twice: a dynamic cache grows by concatenation,
      so the old and the grown copy coexist at each step;
    - train: gradients (4 bytes a parameter) and AdamW's two moments (8), the activations kept for the
      backward pass (Korthikanti et al. 2022: S*B*H*(34 + 5*A*S/H) bytes a layer at 16 bits, scaled to the
      dtype), and the logits with their float32 copy and gradient for the loss.
    """
    b, s, e = shape.batch, shape.positions, shape.compute_bytes
    scores = b * d.heads * s * s
    logits = b * s * d.vocab if shape.head in _LM_HEADS else 0
    layer = b * s * (8 * d.hidden + 2 * d.intermediate)
    if shape.mode == "train":
        kept = d.layers * s * b * d.hidden * (34 + 5 * d.heads * s / max(d.hidden, 1)) * e / 2
        return int(parameters * 12 + kept + logits * (e + 8))
    if shape.mode == "generate":
        head_dim = d.hidden // max(d.heads, 1)
        cache = 2 * d.layers * b * (s + shape.new_tokens) * d.kv_heads * head_dim
        return (layer + scores + 2 * cache) * e + b * d.vocab * 4
    return (layer + scores + logits) * e


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int  # 0 when the model is already loaded in the process that runs the item
    work_bytes: int
    free_bytes: int | None  # what the device had free before the item; None where it cannot be read
    free_source: str  # how free_bytes was read, or why it could not be

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.work_bytes

    def record(self) -> dict[str, Any]:
        """The item's extra_info entries, in bytes."""
        return {
            "memory_estimate_bytes": self.total_bytes,
            "weights_estimate_bytes": self.weights_bytes,
            "work_estimate_bytes": self.work_bytes,
            "device_free_bytes": self.free_bytes,
        }

    def skip_reason(self) -> str | None:
        """Why the item cannot fit, or None (also when the free memory is unknown: then it is tried)."""
        if self.free_bytes is None or self.total_bytes <= self.free_bytes:
            return None
        return (
            f"needs about {_gib(self.total_bytes)} (weights {_gib(self.weights_bytes)} + activations etc. "
            f"{_gib(self.work_bytes)}), the device has {_gib(self.free_bytes)} free ({self.free_source}); a "
            "smaller batch, length or dtype may fit, or --tbench-fit-check false to try anyway"
        )


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


def free_memory(device: str, in_this_process: bool, every_gpu: bool = False) -> tuple[int | None, str]:
    """Free memory of ``device`` and how it was read. Where this process runs the item, by the CUDA runtime;
    where workers run it, by NVML: cudaMemGetInfo would create a CUDA context in this process (a few hundred
    MiB of the GPU, held all session, taken from the workers it measures), and an initialised runtime does
    not mean a context on that GPU. ``every_gpu``: the model is spread by a device map, which may use any
    visible GPU, so their free memory is summed."""
    if not device.startswith("cuda"):
        return int(psutil.virtual_memory().available), "the system's available memory"
    if not in_this_process:
        return _free_by_nvml(device, every_gpu)
    if every_gpu:
        count = torch.cuda.device_count()
        total = sum(int(torch.cuda.mem_get_info(index)[0]) for index in range(count))
        return total, f"cudaMemGetInfo summed over the {count} visible GPUs the device map may use"
    index = torch.device(device).index
    free, _ = torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())
    return int(free), "cudaMemGetInfo"


def _free_by_nvml(device: str, every_gpu: bool) -> tuple[int | None, str]:
    from pytest_tbench.machine import nvml
    from pytest_tbench.machine.devices import cuda_index, cuda_uuid

    indexes = list(range(torch.cuda.device_count())) if every_gpu else [cuda_index(device)]
    read = [nvml.free_bytes(cuda_uuid(index)) for index in indexes]
    reasons = [found for found in read if isinstance(found, str)]
    if reasons:
        return None, f"not read: items run in worker processes, and NVML cannot tell ({reasons[0]})"
    total = sum(found for found in read if isinstance(found, int))
    return total, "NVML's free memory" + (
        f", summed over the {len(indexes)} visible GPUs" if every_gpu else ""
    )


def estimate(
    config: PretrainedConfig,
    shape: WorkShape,
    found_weights: tuple[int, int] | None,
    loaded: bool,
    device: str,
    in_this_process: bool,
    every_gpu: bool = False,
) -> MemoryEstimate | None:
    """The item's estimate: ``found_weights`` as ``weights`` gave them (None: no estimate at all), counted
    as needed unless the model is ``loaded`` already where the item runs; ``every_gpu``: compared with the
    free memory of every visible GPU together (a device-mapped model)."""
    if found_weights is None:
        return None
    parameters, weight_bytes = found_weights
    free, source = free_memory(device, in_this_process, every_gpu)
    work = work_bytes(dims(config), shape, parameters)
    return MemoryEstimate(0 if loaded else weight_bytes, work, free, source)
