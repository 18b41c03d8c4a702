"""Measuring an item until the regression gate accepts it (--tbench-compare-retries): a timing regression is
measured again, and fails only if every attempt regresses; a passing attempt replaces the earlier ones, whose
rounds stay in extra_info (``gate_discarded_attempts``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ..compare.gate import Gate, retryable
from ..compare.judge import Verdict
from ..metric_table import MEDIAN_S, PROCESS_ROUNDS
from ..pytest_benchmark_api import discard_stats
from .base import Attempt
from .item import throughput


@dataclass(frozen=True)
class Judged:
    """The attempt that stands, its extra_info (throughput and discarded attempts added) and verdicts, and the
    regressions of each attempt it replaced."""

    attempt: Attempt
    info: dict[str, Any]
    verdicts: list[Verdict]
    earlier: list[list[Verdict]]


def measure_judged(measure: Callable[[], Attempt], benchmark: Any, gate: Gate | None, retries: int) -> Judged:
    """Attempts at the item until one is not a retryable regression, or ``retries`` were made after the first.
    Judges without recording: ``settle`` enters the verdicts once the item's result is recorded."""
    earlier: list[list[Verdict]] = []
    discarded: list[dict[str, Any]] = []
    while True:
        attempt = measure()
        info = attempt.info
        info.update(throughput(attempt.samples, attempt.tokens, attempt.median_s))
        verdicts = []
        if gate is not None and attempt.timings:
            verdicts = gate.judge(benchmark.fullname, attempt.timings, info)
        regressed = retryable(verdicts)
        if not regressed or len(earlier) >= retries:
            break
        earlier.append(regressed)
        discarded.append(_attempt_record(attempt, regressed))
        discard_stats(benchmark)
    if discarded:
        info["gate_discarded_attempts"] = discarded
    return Judged(attempt, info, verdicts, earlier)


def settle(judged: Judged, benchmark: Any, gate: Gate | None) -> None:
    """Enter the item's verdicts in the session's comparison; fail the item if its last attempt regressed."""
    if gate is None or not judged.attempt.timings:
        return
    gate.record_attempts(benchmark.fullname, judged.verdicts, judged.earlier)
    if any(v.failed for v in judged.verdicts):
        pytest.fail(gate.failure_message(judged.verdicts, judged.earlier), pytrace=False)


def _attempt_record(attempt: Attempt, regressed: list[Verdict]) -> dict[str, Any]:
    """What extra_info keeps of an attempt that a new measurement replaced: enough to judge it again."""
    record: dict[str, Any] = {
        MEDIAN_S: attempt.median_s,
        "rounds_s": attempt.timings,
        "regressed": [f"{v.criterion.metric} {v.change:+.1%}" for v in regressed],
    }
    if PROCESS_ROUNDS in attempt.info:
        record[PROCESS_ROUNDS] = attempt.info[PROCESS_ROUNDS]
    return record
