"""``tbench trend``'s logic: the steps of each series (``changepoints.detect``), said in one line each, and
the nightly gate: a regression step that starts at or after a given date.

Torch- and SQLAlchemy-free: it works on ``Series`` whatever store they came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import OptionError
from .display import percent
from .series import Series, SeriesSteps, Step


@dataclass(frozen=True)
class Found:
    """One step of one series, with the run where its new level starts."""

    series: Series
    step: Step

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
            f"{point.date}: {verdict} (p {step.p_value:.1e})"
        )


def find_steps(series: Sequence[Series], alpha: float = 0.01, min_change: float = 0.01) -> list[SeriesSteps]:
    """Each series with the steps found in it (every series, so that a store's recorded change points of a
    series that has none now are cleared)."""
    from .changepoints import detect

    found = []
    for s in series:
        better = s.key.higher_is_better
        steps = detect(s.values(), higher_is_better=better, alpha=alpha, min_change=min_change)
        found.append(SeriesSteps(s, tuple(steps)))
    return found


def findings(found: Sequence[SeriesSteps]) -> list[Found]:
    """Every step, oldest first."""
    every = [Found(entry.series, step) for entry in found for step in entry.steps]
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
    """The regression steps whose new level starts at or after ``since``."""
    return [f for f in found if f.step.regression and datetime.fromisoformat(f.date) >= since]
