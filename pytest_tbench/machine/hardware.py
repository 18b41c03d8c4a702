"""How fast the hardware could go: the dense peak TFLOPS per matmul precision and the peak memory bandwidth of
known GPUs, from the vendor's datasheets, and the peak an item is judged against (``--tbench-peak-tflops`` /
``--tbench-peak-bandwidth`` override the table).

Every TFLOPS figure here is the *dense* one. Datasheets print the tensor-core figures "with sparsity" (2:4
structured sparsity, which a dense transformers model never uses) and say "specifications 1/2 lower without
sparsity": the table holds the halved figure. ``float32`` is the non-tensor-core FP32 rate, which is what a
float32 matmul runs at unless TF32 is allowed (``torch.set_float32_matmul_precision("high")``); an item's
``matmul_precision`` says which applies. The fp16/bf16 figures are those with FP32 accumulation, which is what
cuBLAS does for torch's half-precision matmuls (GeForce cards run FP16 accumulation twice as fast; torch does
not use it).

Matched against the device name torch reports (``torch.cuda.get_device_name``), first match wins. There is
no table for CPUs: their peak depends on the SKU, core count, vector units and clocks under load, so CPU items
get MFU only from a peak the user gives. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# What a matmul runs in, as the peak table knows it (``matmul_precision`` in extra_info).
PRECISIONS = ("float32", "tf32", "float16", "bfloat16")

TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True)
class DevicePeaks:
    """One GPU model's peaks as its datasheet gives them (dense), and where they come from."""

    name: str
    pattern: str  # a regular expression searched in the device name torch reports
    tflops: Mapping[str, float] = field(hash=False)  # dense TFLOPS per matmul precision (PRECISIONS)
    bandwidth_gb_per_s: float  # peak memory bandwidth, 1e9 bytes/s
    source: str  # the vendor datasheet

    def matches(self, device_name: str) -> bool:
        return re.search(self.pattern, device_name, re.IGNORECASE) is not None


_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_H200 = "https://www.nvidia.com/en-us/data-center/h200/"
_A100 = (
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
_L4 = "https://www.nvidia.com/en-us/data-center/l4/"
_L40S = "https://www.nvidia.com/en-us/data-center/l40s/"
_ADA = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"


def _tflops(fp32: float, tf32: float, half: float) -> dict[str, float]:
    """fp16 and bf16 tensor-core rates are the same on every GPU listed."""
    return {"float32": fp32, "tf32": tf32, "float16": half, "bfloat16": half}


_A100_TFLOPS = _tflops(19.5, 156, 312)

# Ordered: a more specific name comes before one it contains ("H100 PCIe" before "H100").
KNOWN_DEVICES: tuple[DevicePeaks, ...] = (
    # Hopper: the datasheets' "with sparsity" tensor figures halved (1,979 -> 989.5 bf16 on SXM). The SXM5
    # board reports itself as "NVIDIA H100 80GB HBM3". A GH200 superchip is not an H200 (word boundary).
    DevicePeaks("H100 PCIe", r"\bH100.*PCIe", _tflops(51, 378, 756.5), 2000, _H100),
    DevicePeaks("H100 NVL", r"\bH100.*NVL", _tflops(60, 417.5, 835.5), 3900, _H100),
    DevicePeaks("H100 SXM", r"\bH100", _tflops(67, 494.5, 989.5), 3350, _H100),
    DevicePeaks("H200 NVL", r"\bH200.*NVL", _tflops(60, 417.5, 835.5), 4800, _H200),
    DevicePeaks("H200 SXM", r"\bH200", _tflops(67, 494.5, 989.5), 4800, _H200),
    # Ampere: the same compute in every A100; the bandwidth depends on the memory fitted.
    DevicePeaks("A100 80GB PCIe", r"\bA100.*80GB.*PCIe|\bA100.*PCIe.*80GB", _A100_TFLOPS, 1935, _A100),
    DevicePeaks("A100 80GB SXM", r"\bA100.*80GB", _A100_TFLOPS, 2039, _A100),
    DevicePeaks("A100 40GB", r"\bA100", _A100_TFLOPS, 1555, _A100),
    # Ada. "L4" must not match "L40S": a word boundary after it.
    DevicePeaks("L40S", r"\bL40S\b", _tflops(91.6, 183, 362.05), 864, _L40S),
    DevicePeaks("L4", r"\bL4\b", _tflops(30.3, 60, 121), 300, _L4),
    DevicePeaks("GeForce RTX 4090", r"RTX 4090$", _tflops(82.6, 82.6, 165.2), 1008, _ADA),
)


# A MIG instance is named after its GPU ("NVIDIA A100-SXM4-40GB MIG 1g.5gb") but has a fraction of its SMs and
# memory bandwidth: the whole GPU's peak would understate its MFU and MBU up to 7x.
_MIG = re.compile(r"\bMIG\b")


def known_device(device_name: str) -> DevicePeaks | None:
    """The table's entry for the GPU torch names ``device_name``; None for anything else, a MIG slice too."""
    name = device_name.strip()
    if _MIG.search(name):
        return None
    return next((entry for entry in KNOWN_DEVICES if entry.matches(name)), None)


@dataclass(frozen=True)
class Peak:
    """The peak an item is judged against (in the unit its key names), and where it comes from; ``value``
    None: there is none, and ``source`` says why and how to give one."""

    value: float | None
    source: str


def _is_cpu(device: str) -> bool:
    return device.split(":")[0] == "cpu"


def peak_tflops(device: str, device_name: str, precision: str, given: float | None) -> Peak:
    """The dense peak of ``device`` for matmuls in ``precision``, in TFLOPS."""
    if given is not None:
        return Peak(given, "--tbench-peak-tflops")
    if _is_cpu(device):
        return Peak(
            None,
            f"no CPU peak is known ({device_name}): give this CPU's dense {precision} peak with "
            "--tbench-peak-tflops for MFU",
        )
    entry = known_device(device_name)
    if entry is None:
        return Peak(None, _unknown(device_name, "--tbench-peak-tflops"))
    value = entry.tflops.get(precision)
    if value is None:
        return Peak(None, f"{entry.name}: no {precision} peak in the table; give --tbench-peak-tflops")
    return Peak(value, f"{entry.name} {precision} dense, {entry.source}")


def peak_bandwidth(device: str, device_name: str, given_gb_per_s: float | None) -> Peak:
    """The peak memory bandwidth of ``device``, in bytes/s (the option and the table give GB/s)."""
    if given_gb_per_s is not None:
        return Peak(given_gb_per_s * GIGA, "--tbench-peak-bandwidth")
    if _is_cpu(device):
        return Peak(
            None,
            f"no CPU memory bandwidth is known ({device_name}): give this machine's peak with "
            "--tbench-peak-bandwidth (GB/s) for MBU",
        )
    entry = known_device(device_name)
    if entry is None:
        return Peak(None, _unknown(device_name, "--tbench-peak-bandwidth (GB/s)"))
    return Peak(entry.bandwidth_gb_per_s * GIGA, f"{entry.name}, {entry.source}")


def _unknown(device_name: str, option: str) -> str:
    if _MIG.search(device_name):
        return (
            f"{device_name!r} is a MIG slice of a GPU, whose peak the table does not hold (the whole GPU's "
            f"scaled by the slice's share of its SMs, or bandwidth, is close); give one with {option}"
        )
    known = ", ".join(entry.name for entry in KNOWN_DEVICES)
    return f"no peak is known for {device_name!r} (known: {known}); give one with {option}"
