"""One metric of one item as the gate judges it: raw per-round values where the run kept them, read through
the item's record and the metric table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tbench.core.metric_table import (
    GATE_METRICS,
    PEAK_MEMORY_BYTES,
    THROUGHPUT_TOKENS_PER_S,
    TOKENS_PER_CALL,
    TTFT_PER_ROUND_S,
    Metric,
    stored_unit,
)
from pytest_tbench.core.record import ItemRecord


@dataclass(frozen=True)
class MetricValues:
    point: float  # the figure shown: a median for sampled metrics
    samples: tuple[float, ...]  # empty for metrics measured once per item (memory)
    higher_is_better: bool
    unit: str
    groups: tuple[tuple[float, ...], ...] = ()  # the samples per worker process (--tbench-processes)
    sessions: tuple[float, ...] = ()  # a pooled baseline's figure per saved run (the median of its rounds)


def _time(record: ItemRecord) -> tuple[list[float], float | None]:
    return list(record.samples), record.stats_median_s


def _tokens_per_s(record: ItemRecord) -> tuple[list[float], float | None]:
    tokens = record.metrics.get(TOKENS_PER_CALL) or 0
    rounds = [tokens / s if s > 0 else float("inf") for s in record.samples] if tokens else []
    rate = record.metrics.get(THROUGHPUT_TOKENS_PER_S)
    return rounds, float(rate) if rate is not None else None


def _ttft(record: ItemRecord) -> tuple[list[float], float | None]:
    return record.floats(TTFT_PER_ROUND_S), None  # a mean alone is not judged: it hides the spread


def _peak_memory(record: ItemRecord) -> tuple[list[float], float | None]:
    peak = record.metrics.get(PEAK_MEMORY_BYTES)
    return [], float(peak) if peak is not None else None


# How the gate reads each GateMetric: (per-round values, the single figure used where there are none). A new
# gate metric needs its reader here (tests/test_drift.py checks that every one has one).
READERS: dict[str, Callable[[ItemRecord], tuple[list[float], float | None]]] = {
    "time": _time,
    "tokens_per_s": _tokens_per_s,
    "ttft": _ttft,
    "peak_memory": _peak_memory,
}


def extract(metric: str, item: ItemRecord | Mapping[str, Any]) -> MetricValues | None:
    """The item's values for gate metric ``metric`` (``item``: its record or its JSON entry); None where the
    item has no such metric (a forward item's ttft)."""
    found: Metric | None = GATE_METRICS.get(metric)
    if found is None:
        raise ValueError(f"unknown metric {metric!r}")
    record = item if isinstance(item, ItemRecord) else ItemRecord.from_bench(item)
    higher, unit = found.better == "higher", stored_unit(found.key)
    rounds, single = READERS[metric](record)
    if rounds:
        sessions = tuple(statistics.median(run) for run in record.by_run(rounds) if run)
        return MetricValues(
            statistics.median(rounds), tuple(rounds), higher, unit, record.by_process(rounds), sessions
        )
    return MetricValues(single, (), higher, unit) if single is not None else None
