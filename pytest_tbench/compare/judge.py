"""Deciding, per item and metric, whether a change is a regression: beyond the threshold *and* beyond noise.

Timings (and rates derived from them) need both: the ratio of medians past the threshold, and a one-sided
Mann-Whitney U test at ALPHA. Where both runs spread their rounds over at least MIN_PROCESSES worker
processes (``--tbench-processes``), the test compares per-process medians, so that the spread between
processes, which rounds inside one process cannot show, counts as noise; otherwise it compares the raw
rounds. Memory, near deterministic, needs the threshold and an absolute floor. Too few samples on either
side gives "too few samples", never a guess.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .criteria import Criterion
from .metrics import MetricValues

ALPHA = 0.01
MIN_SAMPLES = 5
# The one-sided exact Mann-Whitney U test of 5 against 5 can reach p = 1/252 < ALPHA; 4 against 4 cannot.
MIN_PROCESSES = 5
MEMORY_FLOOR_BYTES = 16 * 1024 * 1024  # below this a memory change is never a regression

REGRESSED, IMPROVED, UNCHANGED, TOO_FEW = "REGRESSED", "improved", "unchanged", "too few samples"


@dataclass(frozen=True)
class Verdict:
    item: str
    criterion: Criterion
    baseline: float
    now: float
    change: float  # (now - baseline) / baseline
    p_value: float | None
    status: str
    unit: str
    tested_on: str = ""  # what the significance test compares, e.g. "5 vs 5 processes"; "" for memory

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED

    @property
    def significance(self) -> str:
        if self.p_value is None:
            return "-"
        return f"{self.p_value:.2g} ({self.tested_on})"

    def describe(self) -> str:
        significance = f", p={self.significance}" if self.p_value is not None else ""
        return (
            f"{self.criterion.metric}: baseline {format_value(self.baseline, self.unit)}, "
            f"now {format_value(self.now, self.unit)}, {self.change:+.1%} "
            f"(threshold {self.criterion.threshold:.0%}{significance}): {self.status}"
        )


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.3f} ms"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:,.1f} {unit}"


def judge(item: str, criterion: Criterion, base: MetricValues, now: MetricValues) -> Verdict:
    change = (now.point - base.point) / base.point if base.point else 0.0
    worse_by = -change if base.higher_is_better else change

    def verdict(status: str, p_value: float | None = None, tested_on: str = "") -> Verdict:
        return Verdict(item, criterion, base.point, now.point, change, p_value, status, base.unit, tested_on)

    if criterion.metric == "peak_memory":
        if abs(now.point - base.point) < MEMORY_FLOOR_BYTES or abs(worse_by) <= criterion.threshold:
            return verdict(UNCHANGED)
        return verdict(REGRESSED if worse_by > 0 else IMPROVED)

    if min(len(base.samples), len(now.samples)) < MIN_SAMPLES:
        return verdict(TOO_FEW)
    ours, theirs, tested_on = _test_units(now, base)
    if abs(worse_by) <= criterion.threshold:
        return verdict(UNCHANGED, tested_on=tested_on)
    # One-sided: are the current values stochastically worse (or better) than the baseline's?
    larger_is_worse = not base.higher_is_better
    direction = "greater" if (worse_by > 0) == larger_is_worse else "less"
    # Here, not at the top: scipy is a second of `tbench report` and `tbench compare --help`; a session
    # with a gate has it loaded already (compare/gate.py).
    from scipy.stats import mannwhitneyu

    p_value = float(mannwhitneyu(ours, theirs, alternative=direction).pvalue)
    if p_value >= ALPHA:
        return verdict(UNCHANGED, p_value, tested_on)
    return verdict(REGRESSED if worse_by > 0 else IMPROVED, p_value, tested_on)


def _test_units(now: MetricValues, base: MetricValues) -> tuple[list[float], list[float], str]:
    """What the significance test compares: per-process medians where both runs have enough processes,
    else the raw rounds."""
    if min(len(now.groups), len(base.groups)) >= MIN_PROCESSES:
        ours = [statistics.median(group) for group in now.groups]
        theirs = [statistics.median(group) for group in base.groups]
        return ours, theirs, f"{len(ours)} vs {len(theirs)} processes"
    return list(now.samples), list(base.samples), f"{len(now.samples)} vs {len(base.samples)} rounds"
