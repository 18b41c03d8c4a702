"""What the classic benchmark printed as ENVIRONMENT INFORMATION, for pytest-benchmark's machine_info."""

from __future__ import annotations

import platform
import sys
from typing import Any

import psutil
import torch
import transformers

from pytest_tbench.machine import nvml
from pytest_tbench.machine.devices import cpu_name, cuda_uuid, cuda_uuids


def _setting(path: str) -> Any:
    """``torch.<path>`` read or called, or None where this torch lacks it or refuses to say (reading a legacy
    TF32 flag raises RuntimeError once TF32 was set through both the legacy and the fp32_precision API)."""
    value: Any = torch
    try:
        for name in path.split("."):
            value = getattr(value, name)
        return value() if callable(value) else value
    except (AttributeError, RuntimeError):
        return None


# machine_info key -> what torch calls it.
TORCH_FLAGS = {
    "float32_matmul_precision": "get_float32_matmul_precision",
    "cuda_matmul_allow_tf32": "backends.cuda.matmul.allow_tf32",
    "cudnn_allow_tf32": "backends.cudnn.allow_tf32",
    "cuda_matmul_fp32_precision": "backends.cuda.matmul.fp32_precision",
    "cudnn_conv_fp32_precision": "backends.cudnn.conv.fp32_precision",
    "cudnn_rnn_fp32_precision": "backends.cudnn.rnn.fp32_precision",
    "cuda_matmul_allow_fp16_reduced_precision_reduction": (
        "backends.cuda.matmul.allow_fp16_reduced_precision_reduction"
    ),
    "cuda_matmul_allow_bf16_reduced_precision_reduction": (
        "backends.cuda.matmul.allow_bf16_reduced_precision_reduction"
    ),
    "cudnn_benchmark": "backends.cudnn.benchmark",
    "cudnn_deterministic": "backends.cudnn.deterministic",
    "deterministic_algorithms": "are_deterministic_algorithms_enabled",
}


def torch_flags() -> dict[str, Any]:
    """The process-wide switches that change which kernels run, and so GPU timings, on the same hardware:
    TF32 and reduced-precision reductions (legacy and torch 2.9+ ``fp32_precision`` API), cuDNN autotuning
    and determinism. Recorded on CPU machines too, as they are set in code."""
    return {key: _setting(path) for key, path in TORCH_FLAGS.items()}


def _torch_gpus() -> list[dict[str, Any]]:
    """What torch alone can tell of the GPUs, where NVML is absent."""
    return [
        {
            "nvml_index": None,
            "uuid": cuda_uuid(i),
            "torch_index": i,
            "name": torch.cuda.get_device_name(i),
            "memory_total_bytes": torch.cuda.get_device_properties(i).total_memory,
        }
        for i in range(torch.cuda.device_count())
    ]


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python_version": sys.version.split()[0],
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "system": platform.system(),
        "architecture": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "torch_num_threads": torch.get_num_threads(),
        "ram_total_bytes": psutil.virtual_memory().total,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    nvml_absent = nvml.absent_reason()
    info["nvml"] = "present" if nvml_absent is None else nvml_absent
    info["nvidia_driver_version"] = nvml.driver_version()
    info["torch_flags"] = torch_flags()
    gpus = nvml.gpus(cuda_uuids())
    if not gpus and torch.cuda.is_available():
        gpus = _torch_gpus()
    info["gpus"] = gpus
    return info
