"""Reading one metric of one item out of pytest-benchmark JSON: raw samples where the run kept them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricValues:
    point: float  # the figure shown: a median for sampled metrics
    samples: tuple[float, ...]  # empty for metrics measured once per item (memory)
    higher_is_better: bool
    unit: str
    groups: tuple[tuple[float, ...], ...] = ()  # the samples per worker process (--tbench-processes)


def process_counts(count: int, info: dict[str, Any]) -> list[int]:
    """An item's rounds per worker process, in the order of its ``count`` per-round values: its
    ``process_rounds`` where they account for every value, else one process ([] without values)."""
    counts = info.get("process_rounds") or []
    if counts and sum(counts) == count:
        return list(counts)
    return [count] if count else []


def by_process(values: list[float], info: dict[str, Any]) -> tuple[tuple[float, ...], ...]:
    """Per-round values split by the process that measured them; () for a run measured in one process."""
    counts = process_counts(len(values), info)
    if len(counts) < 2:
        return ()
    groups, start = [], 0
    for count in counts:
        groups.append(tuple(values[start : start + count]))
        start += count
    return tuple(groups)


def _sampled(values: list[float], info: dict[str, Any], higher_is_better: bool, unit: str) -> MetricValues:
    return MetricValues(
        statistics.median(values), tuple(values), higher_is_better, unit, by_process(values, info)
    )


def extract(metric: str, bench: dict[str, Any]) -> MetricValues | None:
    """The item's values for ``metric``; None where the item has no such metric (a forward item's ttft)."""
    info = bench.get("extra_info", {})
    data = [float(x) for x in bench.get("stats", {}).get("data", []) or []]
    if metric == "time":
        if data:
            return _sampled(data, info, False, "s")
        median = bench.get("stats", {}).get("median")
        return MetricValues(float(median), (), False, "s") if median is not None else None
    if metric == "tokens_per_s":
        tokens = info.get("tokens_per_call") or 0
        if tokens and data:
            return _sampled([tokens / s if s > 0 else float("inf") for s in data], info, True, "tokens/s")
        rate = info.get("throughput_tokens_per_s")
        return MetricValues(float(rate), (), True, "tokens/s") if rate is not None else None
    if metric == "ttft":
        rounds = [float(x) for x in info.get("ttft_per_round_s", [])]
        if rounds:
            return _sampled(rounds, info, False, "s")
        return None
    if metric == "peak_memory":
        peak = info.get("peak_memory_bytes")
        return MetricValues(float(peak), (), False, "bytes") if peak is not None else None
    raise ValueError(f"unknown metric {metric!r}")
