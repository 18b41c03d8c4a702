"""The run's one decision under --tbench-ab: every item's paired tests, held together to one error rate.

Each item and criterion gives a one-sided p-value (paired.py: "no worse" against "worse"); an item's time
and tokens/s are one test (the same rounds). One more test is the run as a whole: each pair of side
processes serves every item, so each pair's mean log ratio over the items it measured is one figure, and a
Student t test over pairs sees a small change spread over every item where no single item is decided.

The run fails where a test survives the Benjamini-Hochberg procedure at ALPHA over all of the run's tests
(scipy's ``false_discovery_control``) *and* its interval does not rule out the threshold (never on a point
estimate). In a run where nothing changed, BH fails the run with probability at most ALPHA (with no true
change, a false discovery rate is the chance of any false failure). Holm's procedure holds the same
run-level rate; chosen between them by simulated power at the same false-failure rate (48 items, 8 pairs,
pair means scattering 2.6% / 4.6%, 4000 runs each: benches/multiplicity_power.py): unchanged runs failed
0.10% / 0.98% (BH) against 0.08% / 0.78% (Holm); one item slowed by 10% was caught in 98.6% / 48.8% (BH)
and 98.2% / 48.0% (Holm) of runs, but every item slowed by 5% was caught per item in 96% / 32% (BH)
against 49% / 5% (Holm). Where some items really regressed, BH may name an unchanged item with them
(about 0.02 per run with half the items 5% slower), a price paid only in runs that fail anyway.

An item whose interval lies wholly past no change but is not confirmed is "cannot tell". Undecided items
(cannot tell, too few samples) pass, warn or fail the run by ``--tbench-ab-undecided``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_tbench.core.metric_table import GATE_METRICS
from pytest_tbench.judge.judge import MIN_RUN_ITEMS, REGRESSED, TOO_FEW, UNCHANGED, counted
from pytest_tbench.judge.paired import (
    CANNOT_TELL,
    CONFIDENCE,
    FASTER,
    LARGER_WITHIN,
    NOT_WORSE_PAST,
    SLOWER_WITHIN,
    SMALLER,
    _t,
    one_sided_p,
    status_from,
    worse_interval,
)
from pytest_tbench.settings.ab import MIN_PAIRS

ALPHA = 0.01  # the chance that a run of unchanged code fails
UNDECIDED = (CANNOT_TELL, TOO_FEW)
# An item's outcome is its most severe verdict's; the closing line counts them in this order.
SEVERITY = (
    REGRESSED,
    CANNOT_TELL,
    TOO_FEW,
    SLOWER_WITHIN,
    LARGER_WITHIN,
    NOT_WORSE_PAST,
    UNCHANGED,
    FASTER,
    SMALLER,
)
RUN_TEST = "run"

Verdict = MutableMapping[str, Any]


@dataclass(frozen=True)
class RunEstimate:
    """The whole run's change of time: the mean over pairs of each pair's mean log ratio over its items."""

    change: float
    low: float
    high: float
    pairs: int
    items: int
    p_value: float
    status: str = UNCHANGED

    def describe(self) -> str:
        return f"{self.change:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"

    def as_json(self) -> dict[str, Any]:
        return {
            "change": self.change, "low": self.low, "high": self.high, "pairs": self.pairs,
            "items": self.items, "p_value": self.p_value, "status": self.status, "confidence": CONFIDENCE,
        }  # fmt: skip


@dataclass
class RunVerdict:
    outcomes: dict[str, str]  # item -> its most severe verdict's status
    run: RunEstimate | None
    tests: int  # in the multiplicity procedure
    undecided_mode: str = "warn"
    alpha: float = ALPHA
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        found = Counter(self.outcomes.values())
        order = [s for s in SEVERITY if s in found] + sorted(s for s in found if s not in SEVERITY)
        self.counts = {status: found[status] for status in order}

    @property
    def regressed(self) -> list[str]:
        return [item for item, status in self.outcomes.items() if status == REGRESSED]

    @property
    def undecided(self) -> list[str]:
        return [item for item, status in self.outcomes.items() if status in UNDECIDED]

    @property
    def failed(self) -> bool:
        if self.regressed or (self.run is not None and self.run.status == REGRESSED):
            return True
        return self.undecided_mode == "fail" and bool(self.undecided)

    def line(self) -> str:
        """The run in one line, e.g. ``tbench A/B: 48 items: 2 REGRESSED, 40 unchanged, 6 cannot tell; run
        +0.4% [-0.6%, +1.4%]: unchanged``."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        items = len(self.outcomes)
        text = f"tbench A/B: {counted(items, 'item')}: {counts or 'none judged'}"
        if self.run is not None:
            text += f"; run {self.run.describe()}: {self.run.status}"
        elif 0 < items < MIN_RUN_ITEMS:
            text += f"; no run-level test under {MIN_RUN_ITEMS} items"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "line": self.line(),
            "failed": self.failed,
            "procedure": "benjamini-hochberg",
            "alpha": self.alpha,
            "tests": self.tests,
            "counts": self.counts,
            "run": self.run.as_json() if self.run is not None else None,
            "regressed": self.regressed,
            "undecided": self.undecided,
            "undecided_mode": self.undecided_mode,
        }


def settle_run(
    items: Sequence[tuple[str, Sequence[Verdict]]], undecided_mode: str = "warn", alpha: float = ALPHA
) -> RunVerdict:
    """The run's verdict from every item's verdicts (as paired.py's ``as_json`` writes them); each verdict's
    status (and text, advice) is set to the run's decision in place, so that the JSON and the table say it."""
    run = _run_estimate(items)
    keys: dict[tuple[str, str], float] = {}
    for item, verdicts in items:
        for verdict in verdicts:
            if verdict.get("p_value") is not None:
                keys.setdefault((item, str(verdict.get("test"))), float(verdict["p_value"]))
    if run is not None:
        keys[("", RUN_TEST)] = run.p_value
    confirmed = _benjamini_hochberg(keys, alpha)
    for item, verdicts in items:
        for verdict in verdicts:
            _settle(verdict, (item, str(verdict.get("test"))) in confirmed, len(keys), alpha)
    if run is not None:
        limit = min(
            (float(v["limit"]) for _, vs in items for v in vs if _metric(v) == "time" and v.get("limit")),
            default=0.05,
        )
        status = status_from(run.low, run.high, limit, "time", ("", RUN_TEST) in confirmed)
        run = RunEstimate(run.change, run.low, run.high, run.pairs, run.items, run.p_value, status)
    outcomes = {item: _outcome(verdicts) for item, verdicts in items if verdicts}
    return RunVerdict(outcomes, run, len(keys), undecided_mode, alpha)


def _benjamini_hochberg(p_values: dict[tuple[str, str], float], alpha: float) -> set[tuple[str, str]]:
    if not p_values:
        return set()
    from scipy.stats import false_discovery_control  # late: scipy costs a second of `tbench compare --help`

    adjusted = false_discovery_control(list(p_values.values()), method="bh")
    return {key for key, p in zip(p_values, adjusted, strict=True) if p <= alpha}


def _metric(verdict: Verdict) -> str:
    return str(verdict["criterion"]).split(":", 1)[0]


def _settle(verdict: Verdict, confirmed: bool, tests: int, alpha: float) -> None:
    if verdict.get("low") is None or verdict.get("limit") is None:
        return  # nothing paired: the plain rule's status stands
    metric = _metric(verdict)
    higher = GATE_METRICS[metric].better == "higher"
    low, high = worse_interval(float(verdict["low"]), float(verdict["high"]), higher)
    status = status_from(low, high, float(verdict["limit"]), metric, confirmed)
    text = str(verdict.get("text", ""))
    verdict["text"] = f"{text.rsplit(': ', 1)[0]}: {status}" if text else status
    if status == CANNOT_TELL and low > 0:  # past no change, but not confirmed among the run's tests
        verdict["advice"] = (
            f"not confirmed among the run's {tests} tests (p={float(verdict['p_value']):.2g}; "
            f"Benjamini-Hochberg at {alpha:.0%}); " + str(verdict.get("advice") or "more pairs would decide")
        )
    verdict["status"] = status


def _outcome(verdicts: Sequence[Verdict]) -> str:
    statuses = [str(v["status"]) for v in verdicts]
    rank = {status: index for index, status in enumerate(SEVERITY)}
    return min(statuses, key=lambda s: rank.get(s, len(SEVERITY)))


def _run_estimate(items: Sequence[tuple[str, Sequence[Verdict]]]) -> RunEstimate | None:
    """The run-level test over pairs; None with fewer than MIN_RUN_ITEMS items or MIN_PAIRS pairs of time."""
    found = [
        [float(value) for value in verdict.get("pair_log_ratios") or []]
        for _, verdicts in items
        for verdict in verdicts
        if _metric(verdict) == "time" and verdict.get("pair_log_ratios")
    ]
    # The pairs every item has: with --tbench-ab-pairs MIN:MAX only the undecided items have pairs past MIN,
    # and a pair's mean over a few undecided items is not the run's.
    common = min((len(logs) for logs in found), default=0)
    by_pair = {index: [logs[index] for logs in found] for index in range(common)}
    measured = len(found)
    if measured < MIN_RUN_ITEMS or len(by_pair) < MIN_PAIRS:
        return None
    means = [statistics.fmean(values) for values in by_pair.values()]
    center = statistics.fmean(means)
    half = _t(CONFIDENCE, len(means)) * statistics.stdev(means) / math.sqrt(len(means))
    p_value = one_sided_p(means, worse_is_higher=True)
    return RunEstimate(
        math.expm1(center),
        math.expm1(center - half),
        math.expm1(center + half),
        len(means),
        measured,
        p_value,
    )
