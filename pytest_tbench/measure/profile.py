"""``--tbench-profile DIR``: after an item's measured rounds, never inside them, more rounds under
``torch.profiler`` (CPU activity, and CUDA activity on a GPU; input shapes recorded). The trace goes to DIR as
Chrome/Perfetto JSON, gzipped (one file per item and A/B side: open it in https://ui.perfetto.dev or
chrome://tracing); the heaviest operators by self time, on the host and on the device, go into the item's
extra_info as ``profile``.

The profiled rounds run after the work's metrics are read, so that neither the timings nor the per-round
records (generate's step stamps, train's losses) see them; the memory tracker has stopped too. Each round's
timed part runs inside a ``tbench::round`` range: its own self time is what the round spent outside every
operator (Python and framework overhead), and the ranges mark the rounds in the trace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tbench.machine.devices import is_cuda
from pytest_tbench.measure.rounds import RoundBody

ROUND_RANGE = "tbench::round"
TOP_OPERATORS = 50  # per activity: a model's forward has fewer distinct operators, so the list is whole


@dataclass(frozen=True)
class ProfileRequest:
    """Where an item's trace goes (an absolute folder: a worker's working directory may differ), how many
    rounds are profiled, the item (its node id: two tests may measure the same case) and a label that tells
    an item's files apart where several processes profile it (A/B sides, tensor-parallel ranks)."""

    folder: str
    rounds: int = 1
    item: str = "item"
    label: str = ""

    def trace_path(self) -> Path:
        name = re.sub(r"[^\w.\-]+", "_", self.item) + (f".{self.label}" if self.label else "")
        return Path(self.folder) / f"{name}.pt.trace.json.gz"


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
    return entry


def profile_or_reason(body: RoundBody, request: ProfileRequest) -> dict[str, Any]:
    """``profile_rounds``, or where it failed (a folder that cannot be written, out of memory under the
    profiler) why, as ``{"unavailable_reason": ...}``: the item's measured figures stand either way."""
    try:
        return profile_rounds(body, request)
    except Exception as exc:
        return {"unavailable_reason": f"{type(exc).__name__}: {exc}"}


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
