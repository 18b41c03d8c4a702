"""Deciding, per item and metric, whether a change is a regression: beyond the threshold *and* beyond noise.

Timings (and rates derived from them) need both: the ratio of medians past the threshold, and a one-sided
Mann-Whitney U test on the raw samples of the two runs at ALPHA. Memory, near deterministic, needs the
threshold and an absolute floor. Too few samples on either side gives "too few samples", never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import mannwhitneyu

from .criteria import Criterion
from .metrics import MetricValues

ALPHA = 0.01
MIN_SAMPLES = 5
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

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED

    def describe(self) -> str:
        significance = f", p={self.p_value:.2g}" if self.p_value is not None else ""
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

    def verdict(status: str, p_value: float | None = None) -> Verdict:
        return Verdict(item, criterion, base.point, now.point, change, p_value, status, base.unit)

    if criterion.metric == "peak_memory":
        if abs(now.point - base.point) < MEMORY_FLOOR_BYTES or abs(worse_by) <= criterion.threshold:
            return verdict(UNCHANGED)
        return verdict(REGRESSED if worse_by > 0 else IMPROVED)

    if min(len(base.samples), len(now.samples)) < MIN_SAMPLES:
        return verdict(TOO_FEW)
    if abs(worse_by) <= criterion.threshold:
        return verdict(UNCHANGED)
    # One-sided: are the current samples stochastically worse (or better) than the baseline's?
    larger_is_worse = not base.higher_is_better
    direction = "greater" if (worse_by > 0) == larger_is_worse else "less"
    p_value = float(mannwhitneyu(now.samples, base.samples, alternative=direction).pvalue)
    if p_value >= ALPHA:
        return verdict(UNCHANGED, p_value)
    return verdict(REGRESSED if worse_by > 0 else IMPROVED, p_value)
