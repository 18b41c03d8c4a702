"""Device names, presence and synchronisation: the only place that knows CPU from CUDA."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> str:
    """``auto`` becomes ``cuda`` when a CUDA device is visible, else ``cpu``; other names stay as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is float16 on CUDA and float32 on CPU, as in the seed suite ("fp16 on GPU")."""
    if dtype == "auto":
        return "float16" if is_cuda(device) else "float32"
    return dtype


def is_cuda(device: str) -> bool:
    return device.split(":")[0] == "cuda"


def absent_reason(device: str) -> str | None:
    """Why ``device`` cannot run here, or None when it can."""
    if not is_cuda(device):
        return None
    if not torch.cuda.is_available():
        return f"device {device} absent: torch {torch.__version__} sees no CUDA device"
    index = int(device.split(":")[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        return f"device {device} absent: {count} CUDA device(s) visible"
    return None


def synchronize(device: str) -> None:
    """Wait for all queued work on ``device``; a no-op on CPU, where calls return when done."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def empty_cache(device: str) -> None:
    if is_cuda(device) and torch.cuda.is_available():
        torch.cuda.empty_cache()
