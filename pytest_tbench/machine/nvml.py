"""NVML look-ups that degrade to "absent" instead of failing where there is no NVIDIA driver.

NVML numbers GPUs in PCI bus order and ignores CUDA_VISIBLE_DEVICES, so an NVML index is not a torch index:
a GPU is found by its UUID (``torch.cuda.get_device_properties(i).uuid``), never by position.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# nvmlDeviceGetComputeMode's values, by name.
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _absent(exc: Exception) -> str:
    return f"NVML absent: {type(exc).__name__}: {exc}"


def absent_reason() -> str | None:
    try:
        _nvml()
    except Exception as exc:  # no library, no driver, no device: all mean "absent"
        return _absent(exc)
    return None


def _text(value: bytes | str) -> str:
    """Old pynvml releases return bytes where newer ones return str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def bare_uuid(uuid: str) -> str:
    """A UUID without NVML's ``GPU-`` / ``MIG-`` prefix, lower case: the form torch writes."""
    text = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def handle_for_uuid(nvml: Any, uuid: str) -> Any | None:
    """NVML's handle of the GPU (or MIG instance) with this UUID, in torch's or NVML's spelling; None if
    NVML knows no such device."""
    bare = bare_uuid(uuid)
    for candidate in dict.fromkeys((uuid, f"GPU-{bare}", f"MIG-{bare}")):
        try:
            return nvml.nvmlDeviceGetHandleByUUID(candidate)
        except Exception:  # NVMLError_NotFound / InvalidArgument: try the next spelling
            continue
    return None


@dataclass(frozen=True)
class MemoryInUse:
    """What NVML can say about one GPU's memory at one moment."""

    device_used_bytes: int | None  # every process on the GPU (on a MIG instance: that instance)
    process_used_bytes: int | None  # this process alone: allocator pool, CUDA context, libraries' workspaces
    unavailable_reason: str | None  # why a figure above is None; None when both are known


# How a per-process figure's absence begins where NVML works but cannot give it (a container's pid namespace,
# a GPU without per-process accounting), as opposed to NVML failing: the self-check skips these.
NOT_LISTED = "NVML lists no compute process with this process's pid"
NO_PROCESS_MEMORY = "NVML does not report per-process memory on this GPU"


def _process_used(nvml: Any, handle: Any, pid: int) -> tuple[int | None, str | None]:
    try:
        processes = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except Exception as exc:
        return None, f"NVML cannot list the GPU's compute processes: {type(exc).__name__}: {exc}"
    mine = [p for p in processes if int(p.pid) == pid]
    if not mine:
        return None, (
            f"{NOT_LISTED} {pid} on the GPU ({len(processes)} listed); in a container NVML reports host pids"
        )
    used = [p.usedGpuMemory for p in mine]
    if any(u is None for u in used):
        return None, f"{NO_PROCESS_MEMORY} (e.g. Windows WDDM, MIG)"
    return sum(int(u) for u in used), None


def _device(uuid: str | None) -> tuple[Any, Any] | str:
    """NVML and its handle of the GPU with this UUID, or why there is none."""
    if uuid is None:
        return "torch reports no UUID for the CUDA device, so NVML cannot find it"
    try:
        nvml = _nvml()
    except Exception as exc:
        return _absent(exc)
    handle = handle_for_uuid(nvml, uuid)
    if handle is None:
        return f"NVML knows no GPU with UUID {uuid}"
    return nvml, handle


def context_pids(uuid: str | None) -> set[int] | str:
    """The pids NVML lists as compute processes (each holds a CUDA context) on the GPU with this UUID, or why
    it cannot say."""
    found = _device(uuid)
    if isinstance(found, str):
        return found
    nvml, handle = found
    try:
        return {int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except Exception as exc:
        return f"NVML cannot list the GPU's compute processes: {type(exc).__name__}: {exc}"


def free_bytes(uuid: str | None) -> int | str:
    """The free memory of the GPU with this UUID as NVML reads it (no CUDA context needed), or why not."""
    found = _device(uuid)
    if isinstance(found, str):
        return found
    nvml, handle = found
    try:
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).free)
    except Exception as exc:
        return f"NVML cannot read the GPU's memory: {type(exc).__name__}: {exc}"


def memory_in_use(uuid: str | None, pid: int | None = None) -> MemoryInUse:
    """The used memory of the GPU with this UUID: device-wide, and of process ``pid`` (this process by
    default), each None with the reason where NVML cannot tell."""
    found = _device(uuid)
    if isinstance(found, str):
        return MemoryInUse(None, None, found)
    nvml, handle = found
    reasons = []
    try:
        device_used: int | None = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception as exc:
        device_used = None
        reasons.append(f"NVML cannot read the GPU's memory: {type(exc).__name__}: {exc}")
    process_used, reason = _process_used(nvml, handle, os.getpid() if pid is None else pid)
    if reason is not None:
        reasons.append(reason)
    return MemoryInUse(device_used, process_used, "; ".join(reasons) or None)


def _read(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # NVMLError_NotSupported and kin: the field is unknown on this GPU
        return None


def describe(nvml: Any, handle: Any) -> dict[str, Any]:
    """One GPU's identity and the settings that move its timings, each None where NVML cannot read it."""
    sm, mem = nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM
    return {
        "name": _read(lambda: _text(nvml.nvmlDeviceGetName(handle))),
        "memory_total_bytes": _read(lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total)),
        "power_limit_w": _read(lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000),
        "performance_state": _read(lambda: int(nvml.nvmlDeviceGetPerformanceState(handle))),
        # Current clocks move with load and temperature; the maxima are what a baseline must share.
        "sm_clock_mhz": _read(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, sm))),
        "sm_clock_max_mhz": _read(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, sm))),
        "memory_clock_mhz": _read(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, mem))),
        "memory_clock_max_mhz": _read(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, mem))),
        "persistence_mode": _read(lambda: bool(nvml.nvmlDeviceGetPersistenceMode(handle))),
        # (current, pending) pairs: the current mode is the one the run had.
        "ecc_enabled": _read(lambda: bool(nvml.nvmlDeviceGetEccMode(handle)[0])),
        "mig_enabled": _read(lambda: bool(nvml.nvmlDeviceGetMigMode(handle)[0])),
        "compute_mode": _read(lambda: COMPUTE_MODES.get(int(nvml.nvmlDeviceGetComputeMode(handle)))),
    }


def gpus(torch_uuids: Sequence[str | None] = ()) -> list[dict[str, Any]]:
    """Every GPU NVML sees (in NVML's order, ``nvml_index``) with its ``uuid`` and the torch index it is
    (``torch_index``: its position in ``torch_uuids``, None when torch does not see it), then any torch
    device NVML does not enumerate by index (a MIG instance), with ``nvml_index`` None."""
    try:
        nvml = _nvml()
        count = int(nvml.nvmlDeviceGetCount())
    except Exception:
        return []
    unmatched = {bare_uuid(u): i for i, u in enumerate(torch_uuids) if u is not None}
    found = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # e.g. a GPU lost from the bus: list the others
            continue
        uuid = _uuid(nvml, handle)
        torch_index = unmatched.pop(bare_uuid(uuid), None) if uuid is not None else None
        found.append({"nvml_index": index, "uuid": uuid, "torch_index": torch_index} | describe(nvml, handle))
    for bare, torch_index in unmatched.items():
        handle = handle_for_uuid(nvml, bare)
        if handle is not None:
            entry = {"nvml_index": None, "uuid": _uuid(nvml, handle), "torch_index": torch_index}
            found.append(entry | describe(nvml, handle))
    return found


def _uuid(nvml: Any, handle: Any) -> str | None:
    return _read(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))


def driver_version() -> str | None:
    try:
        version = _nvml().nvmlSystemGetDriverVersion()
    except Exception:
        return None
    return _text(version)


def energy_counter(uuid: str | None) -> Callable[[], int] | str:
    """A reader of the total-energy counter of the GPU with this UUID (millijoules since the driver loaded;
    Volta and newer), or why there is none. The counter is the whole board's: every process on the GPU."""
    found = _device(uuid)
    if isinstance(found, str):
        return found
    nvml, handle = found

    def read() -> int:
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    try:
        read()
    except Exception as exc:  # NVMLError_NotSupported before Volta and on MIG instances
        return (
            "NVML cannot read the GPU's total-energy counter (it needs Volta or newer, and a whole GPU "
            f"rather than a MIG instance): {type(exc).__name__}: {exc}"
        )
    return read
