"""The A/B launcher (``--tbench-ab``): an item measured by P pairs of worker processes, one per side each,
their rounds interleaved (``pairs``), pooled per side and judged on paired evidence (``paired``).

The current side lands in pytest-benchmark's stats and extra_info like any item measured in P processes;
the base side's pooled extra_info and raw rounds go under ``ab_base``, the sides, the pairing and the
item's own verdicts under ``ab``, so that ``tbench compare`` can judge the item again from the JSON alone. An
item does not fail here: the run decides at the session's end, over all items (run_verdict.py).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from ..compare.criteria import Criterion
from ..launchers.base import Attempt, Job
from ..launchers.item import throughput
from ..launchers.pooling import pool
from ..memory_errors import OutOfMemory
from ..metric_table import (
    AB,
    AB_BASE,
    PEAK_MEMORY_INCREASE_BYTES,
    PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES,
    ROUNDS_S,
)
from ..models.code import MODEL_CODE
from ..pytest_benchmark_api import record_samples, round_rules
from .code import compare_sides
from .paired import judge_paired
from .pairs import PairResult, run_pair
from .rejudge import sides_of
from .session import BASE, CURRENT, ABSession
from .side_process import SideError

T = TypeVar("T")
MIN_PAIRED_ROUNDS = 6  # per pair: fewer leaves a pair's mean at the mercy of one or two rounds


def paired_rounds(rounds: int, pairs: int) -> int:
    """Paired rounds per pair: the item's rounds spread over the pairs, at least MIN_PAIRED_ROUNDS."""
    return max(MIN_PAIRED_ROUNDS, math.ceil(rounds / pairs))


class ABLauncher:
    def __init__(
        self,
        benchmark: Any,
        session: ABSession,
        pairs: int,
        criteria: Sequence[Criterion],
        modules: list[str],
    ) -> None:
        self.benchmark = benchmark
        self.session = session
        self.pairs = pairs
        self.criteria = tuple(criteria)
        self.modules = modules

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        start = time.perf_counter()
        case = job.case
        rules = _or_fail(case.id, lambda: round_rules(self.benchmark))
        # Under --benchmark-disable one round per side, in one pair, checks that both sides run.
        pairs = 1 if self.benchmark.disabled else self.pairs
        rounds = 1 if self.benchmark.disabled else paired_rounds(job.rounds, self.pairs)
        processes = _or_fail(case.id, lambda: self.session.started(pairs, self.modules, job.conftests))
        pair_job = replace(job, rounds=rounds, rules=rules)
        results: list[PairResult] = []
        for index, sides in enumerate(processes):
            first = BASE if index % 2 == 0 else CURRENT
            result = _or_fail(case.id, lambda: run_pair(sides, pair_job, first))  # noqa: B023 (called at once)
            failure = result.failure
            if failure is not None:
                side, outcome = failure
                if outcome.status == "oom":
                    return OutOfMemory(f"{side} side: {outcome.message}")
                pytest.fail(
                    f"{case.id}: --tbench-ab: the {side} side failed:\n{outcome.message}", pytrace=False
                )
            results.append(result)
        samples, info = pool(case, [r.outcomes[CURRENT] for r in results])
        base_samples, base_info = pool(case, [r.outcomes[BASE] for r in results])
        base_info[ROUNDS_S] = base_samples
        # Each pair's own item memory, per side: memory is judged pair by pair on it (paired.py).
        for side, found in ((CURRENT, info), (BASE, base_info)):
            found[PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES] = [
                int(r.outcomes[side].info.get(PEAK_MEMORY_INCREASE_BYTES) or 0) for r in results
            ]
        # The median and rates the current side gets from the item runner, so both sides read alike.
        base_median = statistics.median(base_samples) if base_samples else None
        base_info |= throughput(base_info["samples_per_call"], base_info["tokens_per_call"], base_median)
        info[AB_BASE] = base_info
        # Judged as read back from its JSON entry: `tbench compare RUN.json` judges the same two records.
        entry = {"params": case.as_params(), "extra_info": info, "stats": {"data": samples}}
        verdicts = [] if self.benchmark.disabled else judge_paired(case.id, self.criteria, *sides_of(entry))
        info[AB] = {
            "sides": self.session.describe(),
            "pairs": len(results),
            "paired_rounds_per_pair": rounds,
            "interleaving": sorted({r.interleaving for r in results}),
            "first_side_per_pair": [r.first for r in results],
            "order": ["".join("B" if s == BASE else "C" for s in r.order) for r in results],
            "verdicts": [v.as_json() for v in verdicts],
            MODEL_CODE: compare_sides(base_info, info),
            "wall_time_s": time.perf_counter() - start,
        }
        info["isolated"] = True
        record_samples(self.benchmark, samples)
        timings = [] if self.benchmark.disabled else samples
        return Attempt(info, info["samples_per_call"], info["tokens_per_call"], timings)


def _or_fail(item: str, call: Callable[[], T]) -> T:
    """``call()``, or the item's failure naming the side that broke (failed outside the except block: the
    chained traceback would say nothing more)."""
    try:
        return call()
    except (ValueError, SideError) as exc:
        problem = str(exc)
    pytest.fail(f"{item}: --tbench-ab: {problem}", pytrace=False)
