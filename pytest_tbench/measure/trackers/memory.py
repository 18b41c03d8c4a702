"""Peak memory of one item, read without disturbing its timing.

CPU: the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs at the item's start and read
at its end, so nothing runs while the item is timed. Where that is not possible a sampling thread stands in.
CUDA: the allocator's cache is emptied and its peak statistics reset at the start, so an earlier item's cached
blocks do not count as this item's reserved peak; NVML adds this process's and the whole device's used memory
at the item's end. A backend other than PyTorch's (ONNX Runtime) allocates outside PyTorch's allocator, so its
item's peak is NVML's figure for this process instead (at the end, over the start: ORT's arena keeps what it
grew to), or unknown, with the reason, where NVML cannot tell. Every tracker reports ``peak_memory_bytes``
(the peak the item reached) and ``peak_memory_increase_bytes`` (that peak over the memory in use at its start)
plus device-specific entries, all in bytes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import psutil
import torch

from pytest_tbench.core.metric_table import (
    PEAK_MEMORY_BYTES,
    PEAK_MEMORY_INCREASE_BYTES,
    PEAK_MEMORY_PER_DEVICE_BYTES,
)
from pytest_tbench.machine import nvml
from pytest_tbench.machine.devices import cuda_index, cuda_uuid, empty_cache, is_cuda, on_device, synchronize

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class MemoryTracker(Protocol):
    def start(self) -> None: ...

    def stop(self) -> dict[str, Any]: ...


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in {_STATUS}")
    return int(match.group(1)) * 1024


def release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so that memory an earlier item freed but the allocator
    kept does not count as this item's starting RSS and hide its growth."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def can_reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except OSError:
        return False
    return True


# The sampler where the kernel's high-water mark cannot be reset: a process of its own, reading this process'
# resident set from /proc every interval. A thread would take the GIL 1,000 times a second from the timed
# calls, which in a host-bound loop (a small model's decode steps) is time the item did not spend; the
# process takes a core's slice instead and no lock. It writes "ready" after its first reading (the item
# starts after that) and its peak when told to stop; between, the parent does not wait on it.
_SAMPLER = r"""
import os, select, sys
fd, interval = os.open(f"/proc/{sys.argv[1]}/statm", os.O_RDONLY), float(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    return int(os.pread(fd, 256, 0).split()[1]) * page
peak = rss()
sys.stdout.write("ready\n")
sys.stdout.flush()
while not select.select([sys.stdin], [], [], interval)[0]:
    peak = max(peak, rss())
sys.stdout.write(f"{max(peak, rss())}\n")
sys.stdout.flush()
"""


class RssTracker:
    """Peak resident set size of this process over the item: the kernel's high-water mark where it can be
    reset (``vmhwm``), else a sampler process (``sampling``), else (no /proc: not Linux) a sampler thread
    (``sampling_thread``)."""

    def __init__(self, force_sampling: bool = False, interval_s: float = 0.001) -> None:
        if not force_sampling and can_reset_peak_rss():
            self.method = "vmhwm"
        else:
            self.method = "sampling" if Path(f"/proc/{os.getpid()}/statm").exists() else "sampling_thread"
        self._interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler: subprocess.Popen[str] | None = None
        self._sampled_peak = 0
        self._start_rss = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sampled_peak = max(self._sampled_peak, self._process.memory_info().rss)

    def start(self) -> None:
        # Earlier items' objects caught in reference cycles (optimizer state, caches) die here, not mid-item
        # where their freed pages would be reused and hide this item's growth.
        gc.collect()
        release_free_heap()
        self._start_rss = self._process.memory_info().rss
        if self.method == "vmhwm":
            _CLEAR_REFS.write_text("5")
        elif self.method == "sampling":
            self._sampler = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", _SAMPLER, str(os.getpid()), repr(self._interval_s)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._sampler.stdout is not None
            ready = self._sampler.stdout.readline()  # blocks until its first reading
            if ready.strip() != "ready":
                self._sampler.kill()
                raise RuntimeError(f"the RSS sampler process did not start: {ready!r}")
        else:
            self._sampled_peak = self._start_rss
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="tbench-rss-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> dict[str, Any]:
        if self.method == "vmhwm":
            peak = _status_kib("VmHWM")
        elif self.method == "sampling":
            assert self._sampler is not None
            out, _ = self._sampler.communicate("stop\n", timeout=60)
            peak = max(int(out.split()[-1]), self._process.memory_info().rss)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            peak = max(self._sampled_peak, self._process.memory_info().rss)
        return {
            "peak_rss_bytes": peak,
            "rss_at_start_bytes": self._start_rss,
            "peak_rss_increase_bytes": max(0, peak - self._start_rss),
            "peak_rss_method": self.method,
        }


class CudaTracker:
    """Peak of PyTorch's CUDA caching allocator over the item, plus NVML's used memory at its end."""

    def __init__(self, device: str) -> None:
        # Resolved once, so that start and stop read the same GPU; every call below names it, as calls
        # without a device act on torch's current device, which may be another GPU.
        self.index = cuda_index(device)
        self.device = f"cuda:{self.index}"
        self._uuid = cuda_uuid(self.index)
        self._start_allocated = 0
        self._start_reserved = 0
        self._start_process: int | None = None

    def start(self) -> None:
        with on_device(self.device):
            synchronize(self.device)
            # Tensors of earlier items caught in reference cycles die now and hand their blocks back, and the
            # allocator returns all unused blocks to the driver: otherwise reset_peak_memory_stats starts the
            # reserved peak at the cache an earlier, larger item left, and a small item reports its figure.
            gc.collect()
            empty_cache(self.device)
            torch.cuda.reset_peak_memory_stats(self.index)
            self._start_allocated = torch.cuda.memory_allocated(self.index)
            self._start_reserved = torch.cuda.memory_reserved(self.index)
        self._start_process = nvml.memory_in_use(self._uuid).process_used_bytes

    def stop(self) -> dict[str, Any]:
        with on_device(self.device):
            synchronize(self.device)
            # Read at the end, not sampled by a thread beside the timed calls. The allocator keeps what it
            # reserved until the next item empties it, so the process figure covers the allocator's peak
            # (plus the CUDA context and libraries' workspaces); a transient peak outside it can be missed.
            at_end = nvml.memory_in_use(self._uuid)
            return {
                "cuda_device_uuid": self._uuid,  # which GPU the item ran on, whatever its index here
                "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(self.index),
                "cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.index),
                "cuda_allocated_at_start_bytes": self._start_allocated,
                "cuda_reserved_at_start_bytes": self._start_reserved,
                "nvml_device_used_bytes": at_end.device_used_bytes,
                "nvml_process_used_at_start_bytes": self._start_process,
                "nvml_process_used_at_end_bytes": at_end.process_used_bytes,
                "nvml_unavailable_reason": at_end.unavailable_reason,
            }


# The CUDA entries that add up over the GPUs of a device-mapped model: each GPU has its own allocator.
_SUMMED_CUDA_KEYS = (
    "cuda_max_allocated_bytes",
    "cuda_max_reserved_bytes",
    "cuda_allocated_at_start_bytes",
    "cuda_reserved_at_start_bytes",
    "nvml_device_used_bytes",
    "nvml_process_used_at_start_bytes",
    "nvml_process_used_at_end_bytes",
)


def combine_devices(per_device: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One item's CUDA entries from the trackers of every GPU its model touches: each byte count summed
    (the sum of each GPU's own peak, which bounds the model's simultaneous peak from above; unknown where any
    GPU's is), and each GPU's allocator peak under its device name in ``peak_memory_per_device_bytes``."""
    combined: dict[str, Any] = {
        "cuda_device_uuid": per_device[0][1]["cuda_device_uuid"],
        "cuda_device_uuids": [info["cuda_device_uuid"] for _, info in per_device],
        "nvml_unavailable_reason": next(
            (info["nvml_unavailable_reason"] for _, info in per_device if info["nvml_unavailable_reason"]),
            None,
        ),
        PEAK_MEMORY_PER_DEVICE_BYTES: {name: info["cuda_max_allocated_bytes"] for name, info in per_device},
    }
    for key in _SUMMED_CUDA_KEYS:
        values = [info[key] for _, info in per_device]
        combined[key] = None if any(v is None for v in values) else sum(values)
    return combined


def summarise(device: str, info: dict[str, Any], pytorch_allocator: bool = True) -> dict[str, Any]:
    """The device-neutral peak entries: CUDA allocator figures on a GPU (NVML's for this process where the
    work allocates outside PyTorch's allocator), RSS on the CPU."""
    if is_cuda(device) and not pytorch_allocator:
        peak, start = info["nvml_process_used_at_end_bytes"], info["nvml_process_used_at_start_bytes"]
        if peak is None or start is None:
            return {
                PEAK_MEMORY_BYTES: None,
                PEAK_MEMORY_INCREASE_BYTES: None,
                "peak_memory_kind": "unavailable",
                "peak_memory_unavailable_reason": (
                    "the backend allocates outside PyTorch's allocator, and NVML gives no figure for this "
                    f"process ({info['nvml_unavailable_reason'] or 'none reported'})"
                ),
            }
        kind = "nvml_process_used"
    elif is_cuda(device):
        peak, start = info["cuda_max_allocated_bytes"], info["cuda_allocated_at_start_bytes"]
        kind = "cuda_max_allocated"
    else:
        peak, start = info["peak_rss_bytes"], info["rss_at_start_bytes"]
        kind = "peak_rss"
    return {
        PEAK_MEMORY_BYTES: peak,
        PEAK_MEMORY_INCREASE_BYTES: max(0, peak - start),
        "peak_memory_kind": kind,
    }


@contextmanager
def memory_tracker(
    device: str, force_sampling: bool = False, devices: tuple[str, ...] = (), pytorch_allocator: bool = True
) -> Iterator[dict[str, Any]]:
    """Brackets an item; the yielded dict is filled with the tracker entries when the block ends.
    ``devices``: every device a spread model touches (a device map over several GPUs): each GPU gets its own
    tracker and the item its per-GPU peaks, summed into its peak (``combine_devices``); empty: ``device``
    alone (whose name the per-device entries are then not needed for). ``pytorch_allocator``: False where
    the work allocates its device memory outside PyTorch (another backend's runtime)."""
    gpus = [d for d in devices if is_cuda(d)] if devices else ([device] if is_cuda(device) else [])
    # The CUDA trackers start first: their settling work (gc, emptying the allocator's cache) then happens
    # before the RSS baseline is taken and its high-water mark reset, and does not count as the item's.
    cuda = [CudaTracker(gpu) for gpu in gpus]
    rss = RssTracker(force_sampling)
    trackers: list[MemoryTracker] = [*cuda, rss]
    result: dict[str, Any] = {}
    for tracker in trackers:
        tracker.start()
    try:
        yield result
    finally:
        result.update(rss.stop())
        found = [(tracker.device, tracker.stop()) for tracker in reversed(cuda)][::-1]
        if devices:
            result.update(combine_devices(found) if found else {})
            if "cpu" in devices:  # weights offloaded to the CPU: its share is the process's RSS
                per_device = result.setdefault(PEAK_MEMORY_PER_DEVICE_BYTES, {})
                per_device["cpu"] = result["peak_rss_bytes"]
        elif found:
            result.update(found[0][1])
        result.update(summarise("cuda" if gpus else "cpu", result, pytorch_allocator))
