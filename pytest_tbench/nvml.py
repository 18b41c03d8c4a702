"""NVML look-ups that degrade to "absent" instead of failing where there is no NVIDIA driver."""

from __future__ import annotations

from typing import Any


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def absent_reason() -> str | None:
    try:
        _nvml()
    except Exception as exc:  # no library, no driver, no device: all mean "absent"
        return f"NVML absent: {type(exc).__name__}: {exc}"
    return None


def device_used_bytes(index: int) -> int | None:
    try:
        nvml = _nvml()
        return int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).used)
    except Exception:
        return None


def gpus() -> list[dict[str, Any]]:
    """Name, memory, power limit and performance state of each GPU, as the classic benchmark printed."""
    try:
        nvml = _nvml()
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    found = []
    for index in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        info: dict[str, Any] = {"index": index, "name": nvml.nvmlDeviceGetName(handle)}
        for key, read in (
            ("memory_total_bytes", lambda h: int(nvml.nvmlDeviceGetMemoryInfo(h).total)),
            ("power_limit_w", lambda h: nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000),
            ("performance_state", lambda h: int(nvml.nvmlDeviceGetPerformanceState(h))),
        ):
            try:
                info[key] = read(handle)
            except Exception:
                info[key] = None
        found.append(info)
    return found


def driver_version() -> str | None:
    try:
        version = _nvml().nvmlSystemGetDriverVersion()
    except Exception:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)
