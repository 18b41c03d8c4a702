"""How a history shows a metric's values: the readable unit each stored unit turns into, and the text of a
value, a change and a step. Shared by the plots and the page so that both show the same numbers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from pytest_benchmark.utils import time_unit

from pytest_tbench.core.metric_table import METRICS, MIB
from pytest_tbench.history.series import SeriesKey, Step, worse


@dataclass(frozen=True)
class DisplayUnit:
    """Shown value = stored value x ``scale``, in ``label``."""

    label: str
    scale: float = 1.0

    def show(self, value: float) -> float:
        return value * self.scale


def display_unit(key: SeriesKey, values: Iterable[float]) -> DisplayUnit:
    """The unit ``values`` (stored, in ``key.unit``) read best in: seconds as ns/us/ms/s by the smallest
    value, as pytest-benchmark's tables pick them; bytes as MiB; a metric the metric table scales (MFU as a
    percent, energy per token in mJ) as that table shows it; anything else as stored."""
    if key.unit == "s":
        positive = [v for v in values if v > 0]
        prefix, scale = time_unit(min(positive)) if positive else ("", 1.0)
        return DisplayUnit(f"{prefix}s", scale)  # "ns", "us", "ms", "s"
    if key.unit == "bytes":
        return DisplayUnit("MiB", 1 / MIB)
    metric = METRICS.get(key.metric)
    if metric is not None and metric.scale != 1.0:
        return DisplayUnit(metric.unit, metric.scale)
    return DisplayUnit(key.unit)


def number(value: float) -> str:
    """About four significant figures, without an exponent, thousands separated."""
    size = abs(value)
    digits = 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 10 else 3
    return f"{value:,.{digits}f}"


def percent(ratio: float) -> str:
    """A ratio new/old as the change it is: 1.072 -> "+7.2%"."""
    return f"{(ratio - 1) * 100:+.1f}%"


def is_regression(step: Step, higher_is_better: bool) -> bool:
    return worse(step.ratio, higher_is_better)


def parse_date(text: str) -> datetime:
    """A point's ISO 8601 date, timezone-aware (a date without a zone is UTC, as the store writes them)."""
    try:
        # Python 3.10's fromisoformat does not take a "Z" suffix.
        parsed = datetime.fromisoformat(text.removesuffix("Z") + ("+00:00" if text.endswith("Z") else ""))
    except ValueError:
        raise ValueError(
            f"history point date {text!r} is not ISO 8601; the store writes e.g. 2026-11-20T08:15:00+00:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
