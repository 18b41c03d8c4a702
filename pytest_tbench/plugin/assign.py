"""Which GPUs and CPU cores each pytest-xdist worker owns: pure arithmetic on the parent's lists, so that it
is tested without GPUs. Torch-free; the plugin reads the parent's lists and applies a worker's share.

A worker's GPUs are a slice of the parent's *visible* list (``CUDA_VISIBLE_DEVICES`` as given: indices, UUIDs
or MIG names), never of physical indices: a job already confined to GPUs 4-7 hands out 4-7.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pytest_tbench.core.errors import OptionError

_WORKER_ID = re.compile(r"^gw(\d+)$")


def worker_index(worker_id: str) -> int:
    """The position of an xdist worker among its siblings: ``gw3`` is 3."""
    found = _WORKER_ID.match(worker_id)
    if found is None:
        raise ValueError(f"{worker_id!r} is not a pytest-xdist worker id (gw0, gw1, ...)")
    return int(found.group(1))


def parent_visible_gpus(cuda_visible_devices: str | None, device_count: int) -> list[str]:
    """The GPUs the parent process may hand out, as ``CUDA_VISIBLE_DEVICES`` entries: its own entries where it
    has the variable (an empty value hides every GPU), else the indices of the GPUs it sees."""
    if cuda_visible_devices is None:
        return [str(index) for index in range(device_count)]
    return [entry.strip() for entry in cuda_visible_devices.split(",") if entry.strip()]


def gpus_for_worker(index: int, per_worker: int, visible: Sequence[str]) -> list[str]:
    """Worker ``index``'s GPUs: entries ``index*K .. index*K+K-1`` of the parent's visible list."""
    start = index * per_worker
    if start + per_worker > len(visible):
        raise OptionError(
            f"worker gw{index} needs GPUs {start}..{start + per_worker - 1} of the {len(visible)} visible"
        )
    return list(visible[start : start + per_worker])


def check_gpu_count(workers: int, per_worker: int, visible: Sequence[str]) -> None:
    """A usage error naming the numbers when the workers need more GPUs than the parent sees."""
    needed = workers * per_worker
    if needed > len(visible):
        fits = len(visible) // per_worker
        raise OptionError(
            f"{workers} xdist workers x --tbench-gpus-per-worker {per_worker} need {needed} GPUs, but "
            f"{len(visible)} are visible ({', '.join(visible) or 'none'}): run with -n {fits} or fewer, or "
            "fewer GPUs per worker"
        )


def cpus_for_worker(index: int, workers: int, cpus: Sequence[int]) -> list[int]:
    """Worker ``index``'s cores: an equal, disjoint slice of the parent's (sorted) CPUs; the remainder, if
    any, goes unused so that every worker has the same number of cores."""
    ordered = sorted(cpus)
    per_worker = len(ordered) // workers
    if per_worker < 1:
        raise OptionError(
            f"{workers} xdist workers cannot each have a core of their own: this process may run on "
            f"{len(ordered)} CPUs ({', '.join(map(str, ordered))}); run with -n {len(ordered)} or fewer"
        )
    return ordered[index * per_worker : (index + 1) * per_worker]
