"""The quantities a report shows, each with the unit it is shown in."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .frame import Row

MIB = 1024 * 1024


@dataclass(frozen=True)
class Metric:
    key: str  # extra_info key (seconds, bytes or per second, as the key's suffix says)
    title: str
    unit: str  # the unit after scaling
    scale: float = 1.0
    digits: int = 1

    def value(self, row: Row) -> float | None:
        raw = row.metric(self.key)
        return None if raw is None else raw * self.scale

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})"

    def format(self, value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.{self.digits}f}"


LATENCY = Metric("median_s", "median latency", "ms", 1000, 2)
TOKENS_PER_S = Metric("throughput_tokens_per_s", "throughput", "tokens/s", 1, 0)
SAMPLES_PER_S = Metric("throughput_samples_per_s", "throughput", "samples/s", 1, 1)
E2E_TOKENS_PER_S = Metric("e2e_tokens_per_s", "end-to-end throughput", "tokens/s", 1, 1)
DECODE_TOKENS_PER_S = Metric("decode_tokens_per_s", "decode throughput", "tokens/s", 1, 1)
PEAK_MEMORY = Metric("peak_memory_bytes", "peak memory", "MiB", 1 / MIB, 1)
ITEM_MEMORY = Metric("peak_memory_increase_bytes", "item +memory", "MiB", 1 / MIB, 1)
PREFILL = Metric("ttft_mean_s", "prefill (TTFT)", "ms", 1000, 1)
DECODE = Metric("decode_time_mean_s", "decode", "ms", 1000, 1)
TOTAL = Metric("total_time_mean_s", "total", "ms", 1000, 1)
TOKEN_LATENCY = Metric("decode_token_latency_mean_s", "decode step", "ms/token", 1000, 2)
PARAMETERS = Metric("parameter_bytes", "parameters", "MiB", 1 / MIB, 1)
OPTIMIZER_STATE = Metric("optimizer_state_bytes", "optimizer state", "MiB", 1 / MIB, 1)


def throughput(mode: str) -> Metric:
    """A generate request's throughput is end to end (prefill + decode); other modes count input tokens."""
    return E2E_TOKENS_PER_S if mode == "generate" else TOKENS_PER_S


K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` by ``key``, in the order each key and item first appears."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def points(rows: Iterable[Row], axis: Callable[[Row], int | None], metric: Metric) -> list[tuple[int, float]]:
    """(axis value, metric value) sorted by the axis, leaving out rows that lack either."""
    found = {}
    for row in rows:
        x, y = axis(row), metric.value(row)
        if x is not None and y is not None:
            found[x] = y
    return sorted(found.items())
