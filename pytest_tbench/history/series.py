"""The typed values the history commands pass around: one metric of one item over the runs of a store.

A store reads them (``Store.series``), ``render`` draws and tabulates them, ``changepoints``/``trend`` find
the steps in them. Torch-free and SQLAlchemy-free, so each part can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeriesKey:
    """What a series follows: one metric of one item (its case id, e.g. ``forward-gpt2-b1-s64-cpu-float32``)
    on one machine."""

    model: str
    mode: str
    case_id: str  # the item's case as its id names it (model, batch, length, device, dtype, variants)
    metric: str  # the stored metric name, e.g. "median_s", "peak_memory_bytes", "throughput_tokens_per_s"
    unit: str  # "s", "bytes", "tokens/s", ... (metric_table.stored_unit)
    machine: str  # the machine's identity as the store keys it (a short readable label)
    higher_is_better: bool = False

    def label(self) -> str:
        return f"{self.case_id} {self.metric} on {self.machine}"


@dataclass(frozen=True)
class Point:
    """The metric in one stored run."""

    run_id: int
    date: str  # ISO 8601, UTC: when the run was measured
    commit: str  # full commit id ("" where the run was not in a git repository)
    branch: str
    value: float  # the item's figure: the median of its rounds for timings, the single value otherwise
    low: float | None = None  # a spread around it where the run has rounds (25th percentile)
    high: float | None = None  # (75th percentile)
    rounds: tuple[float, ...] = ()  # the raw per-round values where kept (seconds for timings)


@dataclass(frozen=True)
class Series:
    key: SeriesKey
    points: tuple[Point, ...] = ()  # oldest first (by date, then run id)

    def values(self) -> list[float]:
        return [p.value for p in self.points]


@dataclass(frozen=True)
class Filters:
    """Which series to read; an empty field matches everything. Values are fnmatch globs."""

    model: str = ""
    mode: str = ""
    case: str = ""
    metric: str = ""
    machine: str = ""
    branch: str = ""


def worse(ratio: float, higher_is_better: bool) -> bool:
    """Whether a change of ``ratio`` (new / old) is a regression, by the metric's direction."""
    return ratio < 1.0 if higher_is_better else ratio > 1.0


@dataclass(frozen=True)
class Step:
    """A change point in a series: the level moved at ``index`` (the first point of the new level)."""

    index: int
    before: float  # the level before (mean of the segment before)
    after: float  # the level after (mean of the segment after)
    ratio: float  # after / before
    ratio_low: float  # confidence interval of the ratio
    ratio_high: float
    p_value: float
    regression: bool = False  # worse by the metric's direction (up for a time, down for a throughput)


@dataclass(frozen=True)
class SeriesSteps:
    series: Series
    steps: tuple[Step, ...] = field(default_factory=tuple)
