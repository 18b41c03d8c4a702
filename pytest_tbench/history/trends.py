"""``tbench trend``'s logic: the steps of each series (``changepoints.detect``), kept at a false discovery
rate across the series analysed, said in one line each, matched to the change points a store recorded (so
that each step has the date it was first found), and the nightly gate: a regression step first found in
this analysis (``--fail-new``) or at or after a date (``--fail-since``).

Torch- and SQLAlchemy-free: it works on ``Series`` whatever store they came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import numpy as np
from scipy import stats

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.metric_table import (
    FLOPS_PER_CALL,
    OPTIMIZER_STATE_BYTES,
    PARAMETER_BYTES,
    stored_unit,
)
from pytest_tbench.history.display import percent
from pytest_tbench.history.series import Series, SeriesSteps, Step
from pytest_tbench.history.stored import ChangePoint

# A stored change point is the same step as one found now when it is in the same direction and its run is
# within this many points of the step's: the estimated position moves as a series grows (the bench counts a
# step found within 3 points).
MATCH_POINTS = 3


@dataclass(frozen=True)
class Found:
    """One step of one series, with the run where its new level starts."""

    series: Series
    step: Step
    first_seen: str = ""  # ISO 8601, UTC: when an analysis first found it ("" where no store was asked)
    new: bool = True  # no recorded change point of its series is this step

    @property
    def date(self) -> str:
        return self.series.points[self.step.index].date

    def line(self) -> str:
        """``forward-gpt2-b1-s64-cpu-float32 median_s on vm (AMD EPYC): +7.2% [+5.9%, +8.4%] from commit
        abc1234 (run 42), 2026-11-20T10:00:00+00:00: regression (p 1.2e-05)``"""
        point, step, key = self.series.points[self.step.index], self.step, self.series.key
        commit = f"commit {point.commit[:7]}" if point.commit else "an unversioned run"
        verdict = "regression" if step.regression else "improvement"
        return (
            f"{key.case_id} {key.metric} on {key.machine}: {percent(step.ratio)} "
            f"[{percent(step.ratio_low)}, {percent(step.ratio_high)}] from {commit} (run {point.run_id}), "
            f"{point.date}: {verdict} (p {step.p_value:.1e}){self._seen()}"
        )

    def _seen(self) -> str:
        if not self.first_seen:
            return ""
        return ", new" if self.new else f", first found {self.first_seen}"


def find_steps(series: Sequence[Series], alpha: float = 0.01, min_change: float = 0.01) -> list[SeriesSteps]:
    """Each series with the steps found in it (every series, so that a store's recorded change points of a
    series that has none now are cleared), at a false discovery rate of ``alpha`` across all of them."""
    from pytest_tbench.history.changepoints import detect

    found = []
    for s in series:
        better = s.key.higher_is_better
        steps = detect(s.values(), higher_is_better=better, alpha=alpha, min_change=min_change)
        found.append(SeriesSteps(s, tuple(steps)))
    return control_false_discoveries(found, alpha)


def control_false_discoveries(found: Sequence[SeriesSteps], alpha: float) -> list[SeriesSteps]:
    """Benjamini-Hochberg across series: each step's p-value (already corrected for the search within its
    series) adjusted over every hypothesis tested, one per step kept and one per series with none (p 1:
    a series without a step was tested too, and counting it keeps 200 flat series from yielding about two
    false steps at alpha 0.01). A step whose adjusted p-value is above ``alpha`` is dropped, and the ones
    kept carry the adjusted value. Steps that ``detect`` dropped had p above ``alpha``, whose adjusted value
    is above it too, so screening first and adjusting after is Benjamini-Hochberg on all of them."""
    p_values = [step.p_value for entry in found for step in entry.steps]
    p_values += [1.0] * sum(1 for entry in found if not entry.steps)
    if not p_values:
        return list(found)
    adjusted = iter(stats.false_discovery_control(np.asarray(p_values, dtype=np.float64), method="bh"))
    kept = []
    for entry in found:
        steps = [replace(step, p_value=float(q)) for step, q in zip(entry.steps, adjusted, strict=False)]
        kept.append(SeriesSteps(entry.series, tuple(s for s in steps if s.p_value <= alpha)))
    return kept


def match_stored(entry: SeriesSteps, stored: Sequence[ChangePoint]) -> list[ChangePoint | None]:
    """For each step of ``entry``, the recorded change point (still found, of the same series) that is this
    step: the same direction, its run within ``MATCH_POINTS`` points of the step's, the nearest first;
    None for a step seen for the first time."""
    key = entry.series.key
    position = {point.run_id: i for i, point in enumerate(entry.series.points)}
    free = [
        c
        for c in stored
        if c.cleared_at is None
        and (c.machine, c.case_id, c.metric) == (key.machine, key.case_id, key.metric)
        and c.run_id in position
    ]
    matched: list[ChangePoint | None] = []
    for step in entry.steps:
        near = [
            c
            for c in free
            if c.regression == step.regression and abs(position[c.run_id] - step.index) <= MATCH_POINTS
        ]
        best = min(near, key=lambda c: abs(position[c.run_id] - step.index), default=None)
        if best is not None:
            free.remove(best)
        matched.append(best)
    return matched


def findings(
    found: Sequence[SeriesSteps], stored: Sequence[ChangePoint] | None = None, now: datetime | None = None
) -> list[Found]:
    """Every step, oldest first; with ``stored`` (the store's recorded change points), each with the date it
    was first found (``now`` for a step no record matches)."""
    every = []
    for entry in found:
        if stored is None:
            every += [Found(entry.series, step) for step in entry.steps]
            continue
        today = (now or datetime.now(timezone.utc)).isoformat()
        for step, match in zip(entry.steps, match_stored(entry, stored), strict=True):
            seen = today if match is None else match.found_at
            every.append(Found(entry.series, step, seen, match is None))
    return sorted(every, key=lambda f: (f.date, f.series.key.label()))


_RELATIVE = re.compile(r"^(\d+)([dh])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A date (``2026-11-20``), a time (``2026-11-20T06:00:00+00:00``; UTC unless it says), or a span back
    from now (``7d``, ``36h``), as an aware UTC datetime."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip())
    if relative:
        count, unit = int(relative.group(1)), relative.group(2)
        return now - (timedelta(days=count) if unit == "d" else timedelta(hours=count))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionError(
            f"--fail-since {text!r} is not a date: use e.g. 2026-11-20, 2026-11-20T06:00:00+00:00, 7d or 36h"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def regressions_since(found: Sequence[Found], since: datetime) -> list[Found]:
    """The regression steps first found at or after ``since`` (their new level may start earlier: a step is
    reported only once ``min_size`` points hold it). Steps without a first-found date (no store was asked)
    are keyed on the start of their new level."""
    return [f for f in found if f.step.regression and datetime.fromisoformat(f.first_seen or f.date) >= since]


def new_regressions(found: Sequence[Found]) -> list[Found]:
    """The regression steps that no recorded change point matches: first found by this analysis."""
    return [f for f in found if f.step.regression and f.new]


# Metrics that are counted, not timed: the same code gives the same number on every run, so any change is a
# change of the code or model (a step that timing noise can hide, shown exactly).
_COUNTED = frozenset({FLOPS_PER_CALL, PARAMETER_BYTES, OPTIMIZER_STATE_BYTES})


def is_counted(metric: str) -> bool:
    """FLOPs (flops_per_call and any other count of FLOPs), parameter and optimizer-state bytes."""
    return metric in _COUNTED or stored_unit(metric) == "FLOP"


@dataclass(frozen=True)
class CountedChange:
    """A counted metric that moved between two consecutive runs of its series."""

    series: Series
    index: int  # the first run of the new value

    def line(self) -> str:
        """``forward-gpt2-b1-s64-cpu-float32 flops_per_call on vm (AMD EPYC): 1.49e+10 -> 1.74e+10 (+16.5%)
        from commit abc1234 (run 26), 2026-11-27T13:50:10+00:00``"""
        before, point = self.series.points[self.index - 1], self.series.points[self.index]
        key = self.series.key
        commit = f"commit {point.commit[:7]}" if point.commit else "an unversioned run"
        change = f" ({percent(point.value / before.value)})" if before.value else ""
        return (
            f"{key.case_id} {key.metric} on {key.machine}: {before.value:.4g} -> {point.value:.4g}{change} "
            f"from {commit} (run {point.run_id}), {point.date}"
        )


def counted_changes(series: Sequence[Series]) -> list[CountedChange]:
    """Every change of a counted metric between consecutive runs, oldest first."""
    changes = [
        CountedChange(s, i)
        for s in series
        if is_counted(s.key.metric)
        for i in range(1, len(s.points))
        if not math.isclose(s.points[i].value, s.points[i - 1].value, rel_tol=1e-9)
    ]
    return sorted(changes, key=lambda c: (c.series.points[c.index].date, c.series.key.label()))
