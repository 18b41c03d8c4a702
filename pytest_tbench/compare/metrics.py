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


def extract(metric: str, bench: dict[str, Any]) -> MetricValues | None:
    """The item's values for ``metric``; None where the item has no such metric (a forward item's ttft)."""
    info = bench.get("extra_info", {})
    data = [float(x) for x in bench.get("stats", {}).get("data", []) or []]
    if metric == "time":
        if data:
            return MetricValues(statistics.median(data), tuple(data), False, "s")
        median = bench.get("stats", {}).get("median")
        return MetricValues(float(median), (), False, "s") if median is not None else None
    if metric == "tokens_per_s":
        tokens = info.get("tokens_per_call") or 0
        if tokens and data:
            rates = [tokens / s for s in data if s > 0]
            return MetricValues(statistics.median(rates), tuple(rates), True, "tokens/s")
        rate = info.get("throughput_tokens_per_s")
        return MetricValues(float(rate), (), True, "tokens/s") if rate is not None else None
    if metric == "ttft":
        rounds = [float(x) for x in info.get("ttft_per_round_s", [])]
        if rounds:
            return MetricValues(statistics.median(rounds), tuple(rounds), False, "s")
        return None
    if metric == "peak_memory":
        peak = info.get("peak_memory_bytes")
        return MetricValues(float(peak), (), False, "bytes") if peak is not None else None
    raise ValueError(f"unknown metric {metric!r}")
