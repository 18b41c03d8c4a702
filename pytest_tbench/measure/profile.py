"""``--tbench-profile DIR``: after an item's measured rounds, never inside them, more rounds under
``torch.profiler`` (CPU activity, and CUDA activity on a GPU; input shapes recorded). The trace goes to DIR as
Chrome/Perfetto JSON, gzipped (one file per item and A/B side: open it in https://ui.perfetto.dev or
chrome://tracing); the heaviest operators by self time, on the host and on the device, go into the item's
extra_info as ``profile``.

The profiled rounds run after the work's metrics are read, so that neither the timings nor the per-round
records (generate's step stamps, train's losses) see them; the memory tracker has stopped too. Each round's
timed part runs inside a ``tbench::round`` range: its own self time is what the round spent outside every
operator (Python and framework overhead), and the ranges mark the rounds in the trace.

``--tbench-profile-memory`` adds one more round with CUDA's allocator history on: its snapshot (a pickle that
https://pytorch.org/memory_viz draws) goes next to the trace, and the round's allocations, summed and the
largest with the line of code that made each, go into ``profile.memory``, so that a peak-memory regression
can be put down to allocations. On a CPU item there is no allocator history: ``profile.memory`` says so.
"""

from __future__ import annotations

import pickle
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tbench.machine.devices import is_cuda
from pytest_tbench.measure.rounds import RoundBody

ROUND_RANGE = "tbench::round"
TOP_OPERATORS = 50  # per activity: a model's forward has fewer distinct operators, so the list is whole
MEMORY_EVENTS = 200_000  # allocator events kept: a round of a large model's train step stays inside
LARGEST_ALLOCATIONS = 10


@dataclass(frozen=True)
class ProfileRequest:
    """Where an item's trace goes (an absolute folder: a worker's working directory may differ), how many
    rounds are profiled, the item (its node id: two tests may measure the same case) and a label that tells
    an item's files apart where several processes profile it (A/B sides, tensor-parallel ranks)."""

    folder: str
    rounds: int = 1
    item: str = "item"
    label: str = ""
    memory: bool = False  # --tbench-profile-memory: one more round with CUDA's allocator history

    def trace_path(self) -> Path:
        return Path(self.folder) / f"{self._name()}.pt.trace.json.gz"

    def snapshot_path(self) -> Path:
        return Path(self.folder) / f"{self._name()}.memory.pickle"

    def _name(self) -> str:
        return re.sub(r"[^\w.\-]+", "_", self.item) + (f".{self.label}" if self.label else "")


def profile_rounds(body: RoundBody, request: ProfileRequest) -> dict[str, Any]:
    """Run ``request.rounds`` rounds of ``body`` under the profiler, write the trace and return the item's
    ``profile`` entry: per activity, the top operators by self time per round (ms), their calls per round,
    their share of the profiled rounds' timed wall time and the input shapes of their heaviest call."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if is_cuda(body.device):
        activities.append(ProfilerActivity.CUDA)
    timed_s = 0.0
    with profile(activities=activities, record_shapes=True) as profiler:
        for _ in range(request.rounds):
            body.before()
            start = time.perf_counter()
            with record_function(ROUND_RANGE):
                body.timed()
            timed_s += time.perf_counter() - start
            body.after()
    path = request.trace_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.export_chrome_trace(str(path))  # gzipped, as the name ends in .gz
    averages = list(profiler.key_averages())
    by_shape = list(profiler.key_averages(group_by_input_shape=True))
    entry: dict[str, Any] = {
        "trace": str(path),
        "rounds": request.rounds,
        "round_ms": timed_s * 1e3 / request.rounds,
        "unit": "ms per round",
        "host": _top(averages, by_shape, "self_cpu_time_total", request.rounds, timed_s),
    }
    if ProfilerActivity.CUDA in activities:
        entry["device"] = _top(averages, by_shape, "self_device_time_total", request.rounds, timed_s)
    if request.memory:
        entry["memory"] = memory_history_or_reason(body, request)
    return entry


def profile_or_reason(body: RoundBody, request: ProfileRequest) -> dict[str, Any]:
    """``profile_rounds``, or where it failed (a folder that cannot be written, out of memory under the
    profiler) why, as ``{"unavailable_reason": ...}``: the item's measured figures stand either way."""
    try:
        return profile_rounds(body, request)
    except Exception as exc:
        return {"unavailable_reason": f"{type(exc).__name__}: {exc}"}


def memory_history_or_reason(body: RoundBody, request: ProfileRequest) -> dict[str, Any]:
    """``memory_history``, or why there is none (a CPU item; a failure, which leaves the operator profile)."""
    if not is_cuda(body.device):
        return {
            "unavailable_reason": "--tbench-profile-memory records CUDA's allocator history; "
            f"this item runs on {body.device}"
        }
    try:
        return memory_history(body, request)
    except Exception as exc:
        return {"unavailable_reason": f"{type(exc).__name__}: {exc}"}


def memory_history(body: RoundBody, request: ProfileRequest) -> dict[str, Any]:
    """One round with CUDA's allocator history recorded (Python stacks; history from before it dropped), the
    snapshot pickled next to the trace and summed up by ``summarize_allocations``."""
    import torch

    memory = torch.cuda.memory
    memory._record_memory_history(
        max_entries=MEMORY_EVENTS, stacks="python", device=body.device, clear_history=True
    )
    try:
        body.whole()  # its timed part synchronises: the round's frees are in the history
        snapshot = memory._snapshot(body.device)
    finally:
        memory._record_memory_history(enabled=None, device=body.device)
    path = request.snapshot_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        pickle.dump(snapshot, out)
    index = torch.device(body.device).index
    traces = snapshot.get("device_traces") or []
    trace = traces[index if index is not None else torch.cuda.current_device()] if traces else []
    return {"snapshot": str(path), **summarize_allocations(trace)}


def summarize_allocations(trace: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The round's allocations from one device's allocator trace: how many, their bytes, the most bytes live
    at once above what was live when the round started (a block allocated before it and freed in it counts
    as a fall below that start), and the largest, each with the first line of code outside torch that made
    it (where a model's code asked for the memory)."""
    live = peak = allocated = 0
    allocations: list[Mapping[str, Any]] = []
    for event in trace:
        action, size = event.get("action"), int(event.get("size") or 0)
        if action == "alloc":
            live += size
            allocated += size
            peak = max(peak, live)
            allocations.append(event)
        elif action == "free_completed":
            live -= size
    largest = sorted(allocations, key=lambda e: -int(e.get("size") or 0))[:LARGEST_ALLOCATIONS]
    return {
        "allocations": len(allocations),
        "allocated_bytes": allocated,
        "round_peak_increase_bytes": peak,
        "unit": "bytes",
        "largest": [{"bytes": int(e.get("size") or 0), "where": _where(e)} for e in largest],
    }


def _where(event: Mapping[str, Any]) -> str:
    frames = [f for f in event.get("frames") or [] if isinstance(f, Mapping)]
    for frame in frames:  # innermost first: the first that is not torch's own code
        filename = str(frame.get("filename") or "")
        if "/torch/" not in filename and not filename.startswith("<"):
            return f"{filename}:{frame.get('line')} ({frame.get('name')})"
    return "unknown (no frame outside torch)"


def _top(
    averages: list[Any], by_shape: list[Any], field: str, rounds: int, timed_s: float
) -> list[dict[str, Any]]:
    """The operators with the most self time in ``field`` (microseconds over all rounds), heaviest first."""
    heaviest_shapes: dict[str, tuple[float, Any]] = {}
    for event in by_shape:
        spent = float(getattr(event, field, 0.0) or 0.0)
        if spent > heaviest_shapes.get(event.key, (-1.0, None))[0]:
            heaviest_shapes[event.key] = (spent, event.input_shapes)
    ranked = sorted(
        (e for e in averages if float(getattr(e, field, 0.0) or 0.0) > 0), key=lambda e: -getattr(e, field)
    )
    total_us = timed_s * 1e6
    return [
        {
            "name": event.key,
            "calls": event.count / rounds,
            "self_ms": getattr(event, field) / 1e3 / rounds,
            "share": getattr(event, field) / total_us if total_us > 0 else None,
            "shapes": str(heaviest_shapes.get(event.key, (0.0, None))[1] or ""),
        }
        for event in ranked[:TOP_OPERATORS]
    ]
