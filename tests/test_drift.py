"""The saved-baseline gate and drift between sessions: a timing past the threshold is a regression only past
the bound the pooled runs' own sessions set (at the run's error rate) or a drift allowance (stated, or the
default against one saved session); a run's timing tests share its error rate. And re-measured attempts are
judged pooled."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from pytest_tbench.core.criteria import METRICS, parse_criteria, parse_criterion
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.judge.baseline import pool_runs
from pytest_tbench.judge.gate import retryable
from pytest_tbench.judge.judge import (
    ALPHA,
    CANNOT_TELL,
    DEFAULT_DRIFT,
    IMPROVED,
    ONE_SESSION,
    REGRESSED,
    judge,
)
from pytest_tbench.judge.metrics import READERS, MetricValues, extract
from pytest_tbench.judge.runs import compare_runs
from pytest_tbench.judge.spread import SessionSpread, session_spread
from pytest_tbench.launch.base import Attempt
from pytest_tbench.launch.retries import pool_attempts

# In the suite's parallel part: the judge's arithmetic on made-up rounds, no clock.

TIME = parse_criterion("time:5%")


def _values(samples: list[float], sessions: tuple[float, ...] = ()) -> MetricValues:
    return MetricValues(sorted(samples)[len(samples) // 2], tuple(samples), False, "s", (), sessions)


def test_one_saved_session_allows_the_default_drift_and_fails_far_past_it() -> None:
    base, now = _values([0.100 + i * 1e-4 for i in range(10)]), _values([0.120 + i * 1e-4 for i in range(10)])
    verdict = judge("x", TIME, base, now)  # +20%: within 15% drift and then 5%
    assert verdict.status == CANNOT_TELL and f"default drift allowance of {DEFAULT_DRIFT:.0%}" in verdict.note
    assert not verdict.failed and ONE_SESSION in verdict.describe()
    far = judge("x", TIME, base, _values([0.160 + i * 1e-4 for i in range(10)]))  # +60%: past any drift
    assert far.status == REGRESSED and "+38.9% against the baseline with the default drift" in far.note
    assert judge("x", TIME, now, base).status == IMPROVED  # a speed-up is no cause for alarm
    stated = judge("x", TIME, base, now, drift=0.10)  # +20% is past a stated 10% drift by more than 5%
    assert stated.status == REGRESSED and "the baseline with the stated drift of 10%" in stated.note
    assert judge("x", TIME, base, now, drift=0.18).status == CANNOT_TELL


def test_a_runs_timing_tests_share_its_error_rate() -> None:
    # 10 rounds against 10, all slower: scipy's one-sided Mann-Whitney p is 9.1e-5: under 1%/50, not 1%/200.
    base, now = _values([0.100 + i * 1e-4 for i in range(10)]), _values([0.200 + i * 1e-4 for i in range(10)])
    assert judge("x", TIME, base, now, tests=50).status == REGRESSED
    assert judge("x", TIME, base, now, tests=200).status == CANNOT_TELL
    # 5 processes against 5 reach p = 1/252 at best: over 3 tests that is not under 1% / 3.
    few = MetricValues(0.1, (0.1,) * 5, False, "s", tuple((0.1 + i * 1e-3,) for i in range(5)))
    slow = MetricValues(0.2, (0.2,) * 5, False, "s", tuple((0.2 + i * 1e-3,) for i in range(5)))
    assert judge("x", TIME, few, slow, drift=0.0, tests=2).status == REGRESSED
    held = judge("x", TIME, few, slow, drift=0.0, tests=3)
    assert (
        held.status == CANNOT_TELL and "not under 1% / 3 timing tests of this run (Bonferroni)" in held.note
    )
    assert retryable([held]) == [held]  # measured again: the pooled rounds may confirm it
    within = judge("x", TIME, few, MetricValues(0.104, (0.104,) * 5, False, "s"), tests=3)  # +4%: unchanged
    assert retryable([within]) == []


def test_pooled_sessions_hold_a_slowdown_against_their_drift_bound() -> None:
    base = _values([0.100 + i * 1e-4 for i in range(10)], sessions=(0.095, 0.100, 0.110))
    # Sessions drifting by 2% (sd), items by 1% of their own: with 3 sessions (t at 2 degrees of freedom)
    # an unchanged run stays under +29.8% of the sessions' mean with probability 99%.
    spread = SessionSpread(3, drift_sd=0.02, item_sd=0.01, item_df=30)
    assert math.expm1(spread.allowance(ALPHA, 1)) == pytest.approx(0.298, abs=0.001)
    within = judge("x", TIME, base, _values([0.120 + i * 1e-4 for i in range(10)]), spread=spread)
    assert within.status == CANNOT_TELL and "within the drift between sessions" in within.note
    beyond = judge("x", TIME, base, _values([0.160 + i * 1e-4 for i in range(10)]), spread=spread)
    assert beyond.status == REGRESSED and "against the mean of 3 baseline sessions" in beyond.note
    assert "an unchanged run fails with probability at most 1%" in beyond.note
    # The items' own part is shared over the run's timing tests: more items, a wider bound.
    assert spread.allowance(ALPHA, 48) > spread.allowance(ALPHA, 1)


def _sessions(rng: random.Random, items: int, sessions: int, drift: float, own: float) -> list[list[float]]:
    """Per-item session medians of unchanged code: a shared AR(1) drift (a slow session is followed by a slow
    one, as on a CI runner) with sd ``drift``, and each item's own scatter ``own``; the last session is the
    new run."""
    shifts, level = [], rng.gauss(0, drift)
    for _ in range(sessions):
        level = 0.5 * level + rng.gauss(0, drift * math.sqrt(1 - 0.25))
        shifts.append(level)
    return [[math.exp(shift + rng.gauss(0, own)) for shift in shifts] for _ in range(items)]


@pytest.mark.parametrize(("pooled", "items"), [(3, 16), (5, 48)])
def test_a_pooled_baselines_bound_fails_few_unchanged_runs(pooled: int, items: int) -> None:
    # Simulated runs of unchanged code against N pooled sessions: the run fails where any item is past the
    # bound (threshold 0, no significance test: the bound alone). Stated: at most 1% on independent
    # sessions; here the drift is autocorrelated, which narrows the bound a little. Held to 3%, and the
    # bound must not be so wide that it could never fail: a 2x slowdown fails.
    rng, runs, failed, caught = random.Random(7), 1000, 0, 0
    for _ in range(runs):
        rows = _sessions(rng, items, pooled + 1, drift=0.04, own=0.015)
        spread = session_spread(tuple(row[:-1]) for row in rows)
        assert spread is not None and spread.sessions == pooled
        bound = spread.allowance(ALPHA, items)
        worse = [math.log(row[-1]) - statistics.fmean(math.log(x) for x in row[:-1]) for row in rows]
        failed += max(worse) > bound
        caught += worse[0] + math.log(2) > bound
    assert failed / runs <= 0.03
    assert caught / runs >= 0.9


def _run(medians: list[float]) -> dict[str, object]:
    """A saved run of one item: two rounds around each of ``medians``."""
    data = [x for m in medians for x in (m, m * 1.002)]
    return {"benchmarks": [{"fullname": "t::a", "stats": {"data": data}, "extra_info": {}}]}


def test_a_pooled_baseline_keeps_each_sessions_rounds_apart() -> None:
    runs = [_run([0.100] * 3), _run([0.110] * 3), _run([0.105] * 3)]
    pooled = pool_runs(runs)  # type: ignore[arg-type]
    values = extract("time", pooled["benchmarks"][0])
    assert values is not None
    assert values.sessions == pytest.approx((0.1001, 0.11011, 0.105105))
    # Unchanged code in a slow session: past 5% of the pooled median, not past the slowest session.
    slow_session = _run([0.114] * 3)
    (verdict,) = compare_runs(pooled, slow_session, parse_criteria("time:5%")).verdicts  # type: ignore[arg-type]
    assert verdict.status == CANNOT_TELL


def test_re_measured_attempts_are_pooled_with_one_group_each() -> None:
    first = Attempt(Measurement.of(("item", {"rounds": 3, "ttft_per_round_s": [1.0] * 3})), 1, 8, [0.5] * 3)
    second = Attempt(Measurement.of(("item", {"rounds": 3, "ttft_per_round_s": [0.1] * 3})), 1, 8, [0.1] * 3)
    regressed = judge("x", TIME, _values([0.1] * 5), _values([0.5] * 5), drift=0.0)
    pooled = pool_attempts([first, second], [[regressed]])
    assert pooled.timings == [0.5, 0.5, 0.5, 0.1, 0.1, 0.1]
    info = pooled.info
    assert (info["process_rounds"], info["rounds"], info["gate_attempts"]) == ([3, 3], 6, 2)
    assert info["process_medians_s"] == [0.5, 0.1]
    assert info["ttft_per_round_s"] == [1.0, 1.0, 1.0, 0.1, 0.1, 0.1]
    (earlier,) = info["gate_earlier_attempts"]
    assert earlier["rounds_s"] == [0.5, 0.5, 0.5] and earlier["regressed"] == ["time +400.0%"]


def test_every_gate_metric_has_a_reader() -> None:
    """A metric added to GateMetric without a reader would be unjudgeable (it once fell through to memory)."""
    assert sorted(READERS) == sorted(METRICS)
