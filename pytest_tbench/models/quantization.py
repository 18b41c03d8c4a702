"""Weight quantization of a loaded model (``--tbench-quantization``): torchao's int8 weight-only and int8
dynamic-activation schemes, applied in place after loading, on CPU and CUDA.

torchao quantizes ``nn.Linear`` layers only; GPT-2-style models hold transformers' ``Conv1D`` (a Linear with
its weight transposed), which would be left as they are without a word. They are converted to the equivalent
``nn.Linear`` first (same outputs), so that gpt2 quantizes like any other decoder. A model in which nothing
was quantized is an error, never an "int8" item that ran in float.

torchao is an optional dependency (``pip install 'pytest-tbench[quant]'``); without it a quantized item is a
skip that names the extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..axes import QUANT_NONE

EXTRA = "pip install 'pytest-tbench[quant]' (torchao)"


def _configs() -> dict[str, Callable[[], Any]]:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    return {"int8-weight-only": Int8WeightOnlyConfig, "int8-dynamic": Int8DynamicActivationInt8WeightConfig}


class QuantizationError(RuntimeError):
    """The model could not be quantized as asked; the message says why."""


def unavailable_reason(method: str, train: bool) -> str | None:
    """Why an item with this quantization cannot run here, before anything is loaded (None: it can)."""
    if method == QUANT_NONE:
        return None
    if train:
        return f"quantization {method}: int8 weights are for inference; train items run unquantized"
    if importlib.util.find_spec("torchao") is None:
        return f"quantization {method} needs torchao: {EXTRA}"
    return None


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
    """Quantize ``model``'s linear layers in place with ``method``; the number of layers quantized."""
    if method == QUANT_NONE:
        return 0
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


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: a quantized tensor subclass (int8 data and scales) by its inner tensors, whose
    own ``element_size`` reports the original dtype's; a tensor-parallel shard (DTensor) by the part this
    rank holds."""
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None:
        return tensor_bytes(to_local())
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()
