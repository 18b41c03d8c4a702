"""Variant axes: ways of running the same model on the same input (attention implementation, weight
quantization, torch.compile, the runtime backend), swept like the other coordinates of an item.

One entry per axis names the ``Case`` field, the setting (``--tbench-<key>``, ini ``tbench_<key>``,
config-file key ``<key>``) and the ``TBenchConfig`` attribute, which all share the axis' key; its default is
the value that means "as before", so a record written before the axis existed reads as the default, and an
item at the default keeps the id it had. A non-default value shows in the item id as ``-<tag>:<value>``: the
tag keeps values of different axes apart (``default`` is a compile mode, ``auto`` could be anything), and
``:`` is a character ``pytest -k`` takes inside a word (``=`` is not), so ``-k compile:default`` selects those
items.

An axis' value is shown by the case alone, never by what else the sweep holds: the gate and ``tbench compare``
match items across runs by id, and the uncompiled item of a ``--tbench-compile off,default`` sweep is the same
measurement as the item of an earlier run that had no compile axis.

Torch-free: options and the report read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# torch.compile's modes (torch._inductor.list_mode_options), and "off" for no torch.compile at all.
COMPILE_OFF = "off"
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# The model's own attention choice: nothing is passed to from_pretrained / from_config.
ATTN_AUTO = "auto"

# Weight quantization (models/quantization.py): none, one of torchao's int8 schemes, or bitsandbytes'
# LLM.int8() and 4-bit (NF4, FP4) layers.
QUANT_NONE = "none"
QUANTIZATIONS = (QUANT_NONE, "int8-weight-only", "int8-dynamic", "bnb-int8", "bnb-nf4", "bnb-fp4")

# The runtime of a forward item (backends/): PyTorch itself, the model exported to ONNX and run by ONNX
# Runtime, or the classic TorchScript trace.
BACKEND_PYTORCH = "pytorch"
BACKENDS = (BACKEND_PYTORCH, "onnxruntime", "torchscript", "tensorrt")

# A model spread over several GPUs (models/placement.py): no map (the model on the item's device), or a
# ``device_map`` strategy from_pretrained hands to accelerate's big-model dispatch.
DEVICE_MAP_NONE = "none"
DEVICE_MAPS = (DEVICE_MAP_NONE, "auto", "balanced", "balanced_low_0", "sequential")

# Tensor parallel ranks (launch/torchrun.py), as a string like every axis value: "1" is no tensor parallel.
TP_NONE = "1"


@dataclass(frozen=True)
class Axis:
    key: str  # the Case field, the setting key and the TBenchConfig attribute
    default: str  # "as before": never in an id; what a record without the field reads as
    tag: str  # the id's name for the axis
    # Whether the value changes how the model is loaded (part of its ModelKey): the sweep keeps all items of
    # one value together, so that each copy of the model is loaded once and released before the next.
    loads_model: bool

    def id_part(self, value: str) -> str:
        return "" if value == self.default else f"-{self.tag}:{value}"


AXES: tuple[Axis, ...] = (
    Axis("attn_implementation", ATTN_AUTO, "attn", loads_model=True),
    Axis("quantization", QUANT_NONE, "quant", loads_model=True),
    Axis("compile", COMPILE_OFF, "compile", loads_model=False),
    # Not part of the model's key: a backend exports the session's loaded PyTorch model (whose weights it
    # reads, and whose outputs and FLOPs it is checked and counted against), so every backend shares one load.
    Axis("backend", BACKEND_PYTORCH, "backend", loads_model=False),
    Axis("device_map", DEVICE_MAP_NONE, "dmap", loads_model=True),
    # Ranks load their own shards in their own processes; grouped like a load, so the sweep keeps them
    # together.
    Axis("tp", TP_NONE, "tp", loads_model=True),
)
AXIS_KEYS = tuple(axis.key for axis in AXES)


def variant_id(values: Mapping[str, Any]) -> str:
    """The id suffix of a case's variant values (a case's fields, or its params): "" at every default."""
    return "".join(axis.id_part(str(values.get(axis.key, axis.default))) for axis in AXES)


def variant_label(values: Mapping[str, Any]) -> str:
    """The variant in words for tables and reports (``attn:sdpa compile:default``); "" at every default."""
    return " ".join(
        f"{axis.tag}:{value}"
        for axis in AXES
        if (value := str(values.get(axis.key, axis.default))) != axis.default
    )
