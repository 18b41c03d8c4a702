"""Measuring an item again when the regression gate finds its timing regressed (--tbench-compare-retries),
and judging all its measurements together.

A burst of load on a shared machine can make one measurement regress; measuring again from scratch (new
worker processes under --tbench-processes) gives the gate more evidence. The attempts are pooled into one
result, each attempt a group of its own (its processes, or itself in-process), and the gate judges the pool:
a real slowdown is in every attempt, so pooling keeps detecting it (where "fail only if every attempt
regresses" multiplied the chances of catching it), while a passing burst is outweighed by the attempts after
it. The pooled item is what the results hold; each earlier attempt's rounds and regressions stay beside it
(``gate_earlier_attempts``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tbench.core.errors import ItemFailed
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.core.metric_table import (
    AB_BASE,
    GATE_ATTEMPTS,
    GATE_EARLIER_ATTEMPTS,
    MEDIAN_S,
    PROCESS_MEDIANS_S,
    PROCESS_ROUNDS,
    ROUNDS,
    ROUNDS_S,
    TTFT_PER_ROUND_S,
)
from pytest_tbench.judge.gate import Gate, retryable
from pytest_tbench.judge.judge import Verdict
from pytest_tbench.launch.base import Attempt
from pytest_tbench.measure.item import throughput
from pytest_tbench.measure.limits import GivenPeaks, limits_info
from pytest_tbench.measure.pytest_benchmark_api import discard_stats, record_samples


@dataclass(frozen=True)
class Judged:
    """The result that stands (every attempt pooled), its extra_info and verdicts, and the regressions each
    earlier judgement found before the item was measured again."""

    attempt: Attempt
    info: Measurement
    verdicts: list[Verdict]
    earlier: list[list[Verdict]]


def measure_judged(
    measure: Callable[[], Attempt],
    benchmark: Any,
    gate: Gate | None,
    retries: int,
    peaks: GivenPeaks | None = None,
) -> Judged:
    """Attempts at the item until the pool of them is not a retryable regression, or ``retries`` were made
    after the first. Judges without recording: ``settle`` enters the verdicts once the result is recorded.
    ``peaks``: the peaks the user gave, against which the pooled median is judged (``measure/limits.py``)."""
    earlier: list[list[Verdict]] = []
    attempts: list[Attempt] = []
    while True:
        attempts.append(measure())
        attempt = attempts[0] if len(attempts) == 1 else pool_attempts(attempts, earlier)
        info = derived(attempt, peaks or GivenPeaks())
        verdicts = []
        if gate is not None and attempt.timings:
            verdicts = gate.judge(benchmark.fullname, attempt.timings, info)
        regressed = retryable(verdicts)
        if not regressed or len(earlier) >= retries:
            break
        earlier.append(regressed)
        discard_stats(benchmark)
    if len(attempts) > 1:  # the fixture holds the last attempt's rounds: give it the pool's
        discard_stats(benchmark)
        record_samples(benchmark, attempt.timings)
    return Judged(attempt, info, verdicts, earlier)


def derived(attempt: Attempt, peaks: GivenPeaks) -> Measurement:
    """The attempt's measurement with what its pooled median gives: throughput and the limits (TFLOP/s, MFU,
    MBU). Under --tbench-ab the base side's record gets the same limits from its own pooled median, so that
    reports compare the sides on them too."""
    rates = throughput(attempt.samples, attempt.tokens, attempt.median_s)
    info = attempt.info.add(("derived", rates))
    info = info.add(("derived", limits_info(info, attempt.median_s, peaks)))
    base = info.get(AB_BASE)
    if isinstance(base, Mapping) and base.get(ROUNDS_S):
        limits = limits_info(base, statistics.median(base[ROUNDS_S]), peaks)
        info = info.add(("derived", {AB_BASE: {**base, **limits}}))
    return info


def pool_attempts(attempts: list[Attempt], regressions: list[list[Verdict]]) -> Attempt:
    """Every attempt's rounds as one result: the last attempt's extra_info with the rounds, process groups and
    per-round generate figures of all; one group per attempt that ran in the pytest process."""
    last = attempts[-1]
    timings = [t for a in attempts for t in a.timings]
    pooled: dict[str, Any] = {
        PROCESS_ROUNDS: [n for a in attempts for n in a.info.get(PROCESS_ROUNDS, [len(a.timings)])],
        ROUNDS: len(timings),
        PROCESS_MEDIANS_S: [
            m for a in attempts for m in a.info.get(PROCESS_MEDIANS_S, [statistics.median(a.timings)])
        ],
    }
    if all(TTFT_PER_ROUND_S in a.info for a in attempts):
        pooled[TTFT_PER_ROUND_S] = [x for a in attempts for x in a.info[TTFT_PER_ROUND_S]]
    pooled[GATE_ATTEMPTS] = len(attempts)
    pooled[GATE_EARLIER_ATTEMPTS] = [
        _attempt_record(attempt, found) for attempt, found in zip(attempts[:-1], regressions, strict=True)
    ]
    return Attempt(last.info.add(("attempts", pooled)), last.samples, last.tokens, timings)


def settle(judged: Judged, benchmark: Any, gate: Gate | None) -> None:
    """Enter the item's verdicts in the session's comparison; fail the item if its pooled attempts
    regressed."""
    if gate is None or not judged.attempt.timings:
        return
    gate.record_attempts(benchmark.fullname, judged.verdicts, judged.earlier)
    if any(v.failed for v in judged.verdicts):
        raise ItemFailed(gate.failure_message(judged.verdicts, judged.earlier))


def _attempt_record(attempt: Attempt, regressed: list[Verdict]) -> dict[str, Any]:
    """What extra_info keeps of an earlier attempt on its own: enough to judge it alone again."""
    record: dict[str, Any] = {
        MEDIAN_S: attempt.median_s,
        ROUNDS_S: attempt.timings,
        "regressed": [f"{v.criterion.metric} {v.change:+.1%}" for v in regressed],
    }
    if PROCESS_ROUNDS in attempt.info:
        record[PROCESS_ROUNDS] = attempt.info[PROCESS_ROUNDS]
    return record
