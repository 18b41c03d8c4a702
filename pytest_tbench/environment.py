"""What the classic benchmark printed as ENVIRONMENT INFORMATION, for pytest-benchmark's machine_info."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import psutil
import torch
import transformers

from . import nvml


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "cpu": _cpu_name(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "torch_num_threads": torch.get_num_threads(),
        "ram_total_bytes": psutil.virtual_memory().total,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    nvml_absent = nvml.absent_reason()
    info["nvml"] = "present" if nvml_absent is None else nvml_absent
    info["nvidia_driver_version"] = nvml.driver_version()
    gpus = nvml.gpus()
    if not gpus and torch.cuda.is_available():  # no NVML: what torch alone can tell
        gpus = [
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "memory_total_bytes": torch.cuda.get_device_properties(i).total_memory,
            }
            for i in range(torch.cuda.device_count())
        ]
    info["gpus"] = gpus
    return info
