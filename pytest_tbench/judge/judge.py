"""Deciding, per item and metric, whether a change is a regression: beyond the threshold *and* beyond noise.

Timings (and rates derived from them) need both: the ratio of medians past the threshold, and a one-sided
Mann-Whitney U test at ALPHA over the run's timing tests (Bonferroni: ALPHA / the number of items and timing
tests the run judges; an item's time and tokens/s are the same rounds and count once), so that a run of
unchanged code fails on round noise with probability at most ALPHA however many items it has; a change past
the threshold (and the drift, below) whose p-value is under ALPHA but not under the run's share is "cannot
tell", and is measured again (--tbench-compare-retries), whose pooled rounds may confirm it. Bonferroni, not
Holm or Benjamini-Hochberg as under --tbench-ab: the gate fails each item at its own end (and measures it
again first, --tbench-compare-retries), before the other items' p-values exist; Bonferroni is Holm's first
step, so it decides there what Holm would at worst. Where both runs spread their rounds over at least
MIN_PROCESSES worker processes (``--tbench-processes``), the test compares per-process medians, so that the
spread between processes, which rounds inside one process cannot show, counts as noise; otherwise it compares
the raw rounds. Memory, near deterministic, needs the threshold and an absolute floor. Too few samples on
either side gives "too few samples", never a guess.

A timing is also measured in another session than its baseline, and a machine drifts between sessions (on a
2-core VM the same gpt2 forward's session medians moved 9-10% in three minutes), which no test on two sessions
can tell from a slower commit. So a timing regression must also be past the threshold beyond the drift:
against a pooled baseline (``--tbench-compare-last N``), beyond the prediction bound its own sessions give, at
the run's error rate ALPHA (spread.py); against one session, beyond a drift allowance:
``--tbench-compare-drift``, else DEFAULT_DRIFT. A drift moves every item of a session together, so the
allowance is a run-level rule: an unchanged run fails on drift only in a session that drifted past it, and a
change far past any drift (a 1-thread run against a 2-thread baseline: +60% to +110%) fails.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from pytest_tbench.core.criteria import Criterion
from pytest_tbench.judge.metrics import MetricValues
from pytest_tbench.judge.spread import SessionSpread

ALPHA = 0.01  # the chance that a run of unchanged code fails on round noise (over all its timing tests)
# The drift allowed against a one-session baseline where none is stated: on this 2-core VM the same gpt2
# forward's session medians moved 9-10% within minutes (the largest move seen; 3-5% is usual), so 15% is
# the largest seen and half again. A timing then fails past (1 + 15%) x (1 + threshold): +20.75% at 5%.
DEFAULT_DRIFT = 0.15
MIN_SAMPLES = 5
# A run-level interval (the mean change over items, or over pairs of their items) with two or three items is
# one of them over again, in an interval as wide as theirs: the closing lines say so instead.
MIN_RUN_ITEMS = 4
# The one-sided exact Mann-Whitney U test of 5 against 5 can reach p = 1/252 < ALPHA; 4 against 4 cannot.
MIN_PROCESSES = 5
MEMORY_FLOOR_BYTES = 16 * 1024 * 1024  # below this a memory change is never a regression

REGRESSED, IMPROVED, UNCHANGED, TOO_FEW = "REGRESSED", "improved", "unchanged", "too few samples"
CANNOT_TELL = "cannot tell"
ONE_SESSION = (
    "one baseline session cannot show how far timings drift between sessions: to tell, pool saved runs "
    "(--tbench-compare-last 3), state this machine's drift (--tbench-compare-drift 5%), or measure base and "
    "change in one session (--tbench-ab)"
)
# A change past the threshold and any drift whose p-value is not under the run's share: measured again
# (--tbench-compare-retries), whose pooled rounds may confirm it.
NOT_CONFIRMED = "p={p:.2g}: not under {alpha:.0%} / {tests} timing tests of this run (Bonferroni)"


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
    note: str = ""  # why a change past the threshold is not a regression (drift), if it is not
    # Past the threshold and any drift, significant alone, not at the run's share of its error rate: measured
    # again (--tbench-compare-retries) before it stays "cannot tell".
    unconfirmed: bool = False

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
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.criterion.metric}: baseline {format_value(self.baseline, self.unit)}, "
            f"now {format_value(self.now, self.unit)}, {self.change:+.1%} "
            f"(threshold {self.criterion.threshold:.0%}{significance}): {self.status}{note}"
        )


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.3f} ms"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:,.1f} {unit}"


def judge(
    item: str,
    criterion: Criterion,
    base: MetricValues,
    now: MetricValues,
    drift: float | None = None,
    tests: int = 1,
    spread: SessionSpread | None = None,
) -> Verdict:
    """``drift``: the relative drift between sessions to allow where the baseline is one session (None:
    DEFAULT_DRIFT); ``tests``: the run's timing tests, over which ALPHA is shared; ``spread``: a pooled
    baseline's sessions (the metric's, over all its items), which set the drift bound instead."""
    change = (now.point - base.point) / base.point if base.point else 0.0
    worse_by = -change if base.higher_is_better else change

    def verdict(
        status: str,
        p_value: float | None = None,
        tested_on: str = "",
        note: str = "",
        unconfirmed: bool = False,
    ) -> Verdict:
        return Verdict(
            item,
            criterion,
            base.point,
            now.point,
            change,
            p_value,
            status,
            base.unit,
            tested_on,
            note,
            unconfirmed,
        )

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
    # with a gate has it loaded already (gate.py).
    from scipy.stats import mannwhitneyu

    p_value = float(mannwhitneyu(ours, theirs, alternative=direction).pvalue)
    if p_value >= ALPHA:
        return verdict(UNCHANGED, p_value, tested_on)
    if worse_by < 0:
        return verdict(IMPROVED, p_value, tested_on)
    if spread is not None and len(base.sessions) >= 2:
        beyond, note = _beyond_spread(now.point, base, criterion.threshold, spread, tests)
    else:
        beyond, note = _beyond_drift(now.point, base, criterion.threshold, drift)
    if beyond and p_value >= ALPHA / max(1, tests):  # past any drift, but not significant at the run's share
        note = NOT_CONFIRMED.format(p=p_value, alpha=ALPHA, tests=tests)
        return verdict(CANNOT_TELL, p_value, tested_on, note, unconfirmed=True)
    return verdict(REGRESSED if beyond else CANNOT_TELL, p_value, tested_on, note)


def _beyond_spread(
    now: float, base: MetricValues, threshold: float, spread: SessionSpread, tests: int
) -> tuple[bool, str]:
    """Whether ``now`` is worse than the baseline's sessions' (geometric) mean by more than the threshold
    past the bound their spread sets for an unchanged session, and what it was held against."""
    centre = statistics.fmean(math.log(x) for x in base.sessions)
    worse = math.log(now) - centre if now > 0 else math.inf
    worse = -worse if base.higher_is_better else worse
    bound = spread.allowance(ALPHA, tests)
    past = math.expm1(worse - bound)
    against = f"{math.expm1(worse):+.1%} against the mean of {len(base.sessions)} baseline sessions"
    allowance = f"their drift allowance {spread.describe(ALPHA, tests)}"
    if past > threshold:
        return True, f"{past:+.1%} past {allowance}: {against}"
    return False, f"within the drift between sessions: {against}, {past:+.1%} past {allowance}"


def _beyond_drift(now: float, base: MetricValues, threshold: float, drift: float | None) -> tuple[bool, str]:
    """Whether ``now`` is worse than the baseline's point moved by ``drift`` by more than the threshold, and
    what it was held against."""
    higher = base.higher_is_better
    stated = drift is not None
    drift = drift if drift is not None else DEFAULT_DRIFT
    worst = base.point * (1 - drift) if higher else base.point * (1 + drift)
    against = (
        f"the baseline with the stated drift of {drift:.0%}"
        if stated
        else f"the baseline with the default drift allowance of {drift:.0%} (--tbench-compare-drift)"
    )
    worse = (worst - now) / worst if higher else (now - worst) / worst
    if worse > threshold:
        return True, f"{worse:+.1%} against {against}"
    note = f"within the drift between sessions: {worse:+.1%} against {against}"
    return False, note + (f"; {ONE_SESSION}" if "default" in against else "")


def _test_units(now: MetricValues, base: MetricValues) -> tuple[list[float], list[float], str]:
    """What the significance test compares: per-process medians where both runs have enough processes,
    else the raw rounds."""
    if min(len(now.groups), len(base.groups)) >= MIN_PROCESSES:
        ours = [statistics.median(group) for group in now.groups]
        theirs = [statistics.median(group) for group in base.groups]
        return ours, theirs, f"{len(ours)} vs {len(theirs)} processes"
    return list(now.samples), list(base.samples), f"{len(now.samples)} vs {len(base.samples)} rounds"


def counted(n: int, noun: str) -> str:
    """``n noun`` with the noun's plural where n is not one: "1 item", "48 items"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
