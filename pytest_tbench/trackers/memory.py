"""Peak memory of one item, read without disturbing its timing.

CPU: the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs at the item's start and read
at its end, so nothing runs while the item is timed. Where that is not possible a sampling thread stands in.
CUDA: the allocator's peak statistics are reset at the start; NVML adds what the whole device has in use.
Every tracker reports ``peak_memory_bytes`` (the peak the item reached) and ``peak_memory_increase_bytes``
(that peak over the memory in use at its start) plus device-specific entries, all in bytes.
"""

from __future__ import annotations

import ctypes
import gc
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import psutil
import torch

from .. import nvml
from ..devices import is_cuda, synchronize

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


class RssTracker:
    """Peak resident set size of this process over the item."""

    def __init__(self, force_sampling: bool = False, interval_s: float = 0.001) -> None:
        self.method = "sampling" if force_sampling or not can_reset_peak_rss() else "vmhwm"
        self._interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
        else:
            self._sampled_peak = self._start_rss
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="tbench-rss-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> dict[str, Any]:
        if self.method == "vmhwm":
            peak = _status_kib("VmHWM")
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
    """Peak of PyTorch's CUDA caching allocator over the item, plus NVML's device-wide figure at its end."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self._start_allocated = 0

    def start(self) -> None:
        synchronize(str(self.device))
        torch.cuda.reset_peak_memory_stats(self.device)
        self._start_allocated = torch.cuda.memory_allocated(self.device)

    def stop(self) -> dict[str, Any]:
        synchronize(str(self.device))
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return {
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            "cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            "cuda_allocated_at_start_bytes": self._start_allocated,
            "nvml_device_used_bytes": nvml.device_used_bytes(index),
        }


def summarise(device: str, info: dict[str, Any]) -> dict[str, Any]:
    """The device-neutral peak entries: CUDA allocator figures on a GPU, RSS on the CPU."""
    if is_cuda(device):
        peak, start = info["cuda_max_allocated_bytes"], info["cuda_allocated_at_start_bytes"]
        kind = "cuda_max_allocated"
    else:
        peak, start = info["peak_rss_bytes"], info["rss_at_start_bytes"]
        kind = "peak_rss"
    return {
        "peak_memory_bytes": peak,
        "peak_memory_increase_bytes": max(0, peak - start),
        "peak_memory_kind": kind,
    }


@contextmanager
def memory_tracker(device: str, force_sampling: bool = False) -> Iterator[dict[str, Any]]:
    """Brackets an item; the yielded dict is filled with the tracker entries when the block ends."""
    trackers: list[MemoryTracker] = [RssTracker(force_sampling)]
    if is_cuda(device):
        trackers.append(CudaTracker(device))
    result: dict[str, Any] = {}
    for tracker in trackers:
        tracker.start()
    try:
        yield result
    finally:
        for tracker in reversed(trackers):
            result.update(tracker.stop())
        result.update(summarise(device, result))
