"""Weight quantization (``--tbench-quantization``): torchao's int8 weight-only and int8 dynamic-activation
schemes, applied in place after loading, on CPU and CUDA; and bitsandbytes' LLM.int8() and 4-bit NF4 / FP4
layers, which transformers puts in while ``from_pretrained`` loads the weights (``quantization_config``), on
whichever devices the installed bitsandbytes supports (CUDA, and the CPU since 0.48).

torchao quantizes ``nn.Linear`` layers only; GPT-2-style models hold transformers' ``Conv1D`` (a Linear with
its weight transposed), which would be left as they are without a word. They are converted to the equivalent
``nn.Linear`` first (same outputs), so that gpt2 quantizes like any other decoder. A model in which nothing
was quantized is an error, never an "int8" item that ran in float.

torchao and bitsandbytes are optional dependencies (``pip install 'pytest-tbench[quant]'``); without the one
an item needs, it is a skip that names the extra.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pytest_tbench.core.axes import QUANT_NONE

EXTRA = "pip install 'pytest-tbench[quant]'"
BNB_PREFIX = "bnb-"


def _configs() -> dict[str, Callable[[], Any]]:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    return {"int8-weight-only": Int8WeightOnlyConfig, "int8-dynamic": Int8DynamicActivationInt8WeightConfig}


class QuantizationError(RuntimeError):
    """The model could not be quantized as asked; the message says why."""


def is_bitsandbytes(method: str) -> bool:
    """Whether ``method`` is bitsandbytes' (put in by from_pretrained), not torchao's (applied after)."""
    return method.startswith(BNB_PREFIX)


def unavailable_reason(method: str, train: bool, device: str) -> str | None:
    """Why an item with this quantization cannot run here, before anything is loaded (None: it can)."""
    if method == QUANT_NONE:
        return None
    if train:
        return f"quantization {method}: quantized weights are for inference; train items run unquantized"
    if is_bitsandbytes(method):
        return _bitsandbytes_reason(method, device)
    if importlib.util.find_spec("torchao") is None:
        return f"quantization {method} needs torchao: {EXTRA} (torchao)"
    return None


def _bitsandbytes_reason(method: str, device: str) -> str | None:
    # transformers loads bitsandbytes layers only with accelerate installed, and refuses versions older
    # than its minimum; both are said here rather than as a load error in every item.
    from transformers.utils.import_utils import (
        BITSANDBYTES_MIN_VERSION,
        is_accelerate_available,
        is_bitsandbytes_available,
    )

    missing = [name for name in ("bitsandbytes", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        return f"quantization {method} needs {' and '.join(missing)}: {EXTRA} (bitsandbytes, accelerate)"
    if not is_bitsandbytes_available():
        return f"quantization {method} needs bitsandbytes >= {BITSANDBYTES_MIN_VERSION}: {EXTRA}"
    if not is_accelerate_available():
        return f"quantization {method}: transformers needs a newer accelerate to load bitsandbytes: {EXTRA}"
    import bitsandbytes

    device_type = torch.device(device).type
    supported = sorted(getattr(bitsandbytes, "supported_torch_devices", ()))
    if device_type not in supported:
        return (
            f"quantization {method}: bitsandbytes {bitsandbytes.__version__} has no {device_type} backend "
            f"(it supports {', '.join(supported) or 'none'})"
        )
    return None


def bitsandbytes_config(method: str, dtype: torch.dtype) -> Any:
    """The ``BitsAndBytesConfig`` from_pretrained takes for ``method`` (bitsandbytes' own defaults otherwise:
    LLM.int8()'s outlier threshold 6.0, 4-bit blocks of 64 without double quantization); 4-bit layers
    compute in the item's dtype."""
    from transformers import BitsAndBytesConfig

    if method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    quant_type = method.removeprefix(BNB_PREFIX)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_compute_dtype=dtype)


def quantized_matmuls(method: str) -> str:
    """What computes a quantized layer's matmul, for messages: "torchao's int8 matmuls", ..."""
    if not is_bitsandbytes(method):
        return "torchao's int8 matmuls"
    return "bitsandbytes' int8 matmuls" if method == "bnb-int8" else "bitsandbytes' 4-bit matmuls"


def _bitsandbytes_layers(model: nn.Module) -> int:
    import bitsandbytes

    kinds = (bitsandbytes.nn.Linear8bitLt, bitsandbytes.nn.Linear4bit)
    return sum(isinstance(module, kinds) for module in model.modules())


def _linear_of(conv: Any) -> nn.Linear:
    """The ``nn.Linear`` that computes what a transformers ``Conv1D`` does (x @ W + b, W: in x out)."""
    weight: torch.Tensor = conv.weight
    bias: torch.Tensor | None = conv.bias
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
    linear.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` in ``model`` by its ``nn.Linear``; how many were replaced."""
    from transformers.pytorch_utils import Conv1D

    found = [(name, module) for name, module in model.named_modules() if isinstance(module, Conv1D)]
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _linear_of(module))
    return len(found)


def quantize(model: nn.Module, method: str) -> int:
    """Quantize ``model``'s linear layers in place with ``method``; the number of layers quantized. A
    bitsandbytes model was quantized by from_pretrained: its layers are counted, and none is an error."""
    if method == QUANT_NONE:
        return 0
    if is_bitsandbytes(method):
        layers = _bitsandbytes_layers(model)
        if layers == 0:
            raise QuantizationError(f"quantization {method}: transformers put in no bitsandbytes layer")
        # LLM.int8() casts inputs that are not float16 to float16, and logs so at every call of every layer:
        # in the rounds that would be time spent logging. The cast itself is what users get, and stays.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        return layers
    from torchao.quantization import quantize_

    conv1d_to_linear(model)
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    if linears == 0:
        raise QuantizationError(
            f"quantization {method}: the model has no nn.Linear layer for torchao to quantize"
        )
    quantize_(model, _configs()[method]())
    quantized = sum(
        isinstance(m, nn.Linear) and type(m.weight) is not nn.Parameter and type(m.weight) is not torch.Tensor
        for m in model.modules()
    )
    if quantized == 0:
        raise QuantizationError(
            f"quantization {method}: torchao quantized none of the {linears} linear layers"
        )
    return quantized


def tensor_elements(tensor: torch.Tensor) -> int:
    """The weights a tensor stands for: a packed 4-bit bitsandbytes weight holds two a byte (its ``numel`` is
    half the layer's), and its quant_state keeps the layer's shape."""
    shape = getattr(getattr(tensor, "quant_state", None), "shape", None)
    return math.prod(shape) if shape is not None else tensor.numel()


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: a quantized tensor subclass (int8 data and scales) by its inner tensors, whose
    own ``element_size`` reports the original dtype's; a tensor-parallel shard (DTensor) by the part this
    rank holds; a bitsandbytes weight by its packed data plus the scales it keeps beside it (LLM.int8()'s
    per-row ``SCB``, a 4-bit weight's per-block ``absmax``)."""
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None:
        return tensor_bytes(to_local())
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size() + _scale_bytes(tensor)


def _scale_bytes(tensor: torch.Tensor) -> int:
    scales = [getattr(tensor, "SCB", None)]
    state = getattr(tensor, "quant_state", None)
    while state is not None:  # a double-quantized 4-bit weight's absmax is itself quantized (state2)
        scales.append(getattr(state, "absmax", None))
        state = getattr(state, "state2", None)
    return sum(s.numel() * s.element_size() for s in scales if isinstance(s, torch.Tensor))
