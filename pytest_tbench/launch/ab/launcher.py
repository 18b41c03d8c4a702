"""The A/B launcher (``--tbench-ab``): an item measured by P pairs of worker processes, one per side each,
their rounds interleaved (``pairs``), pooled per side and judged on paired evidence (``paired``).

The current side lands in pytest-benchmark's stats and extra_info like any item measured in P processes;
the base side's pooled extra_info and raw rounds go under ``ab_base``, the sides, the pairing and the
item's own verdicts under ``ab``, so that ``tbench compare`` can judge the item again from the JSON alone. An
item does not fail here: the run decides at the session's end, over all items (judge/run_verdict.py).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from pytest_tbench.core.criteria import Criterion
from pytest_tbench.core.errors import ItemFailed
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.core.metric_table import (
    AB,
    AB_BASE,
    PEAK_MEMORY_INCREASE_BYTES,
    PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES,
    ROUNDS_S,
    SAMPLES_PER_CALL,
    TOKENS_PER_CALL,
)
from pytest_tbench.judge.paired import PairedVerdict, judge_paired
from pytest_tbench.judge.profile_diff import activity, operator_changes, sides_profiles
from pytest_tbench.judge.rejudge import sides_of
from pytest_tbench.judge.sequential import first_look, last_look, run_tests, spent, undecided
from pytest_tbench.judge.sides_code import compare_sides
from pytest_tbench.launch.ab.keep import room_to_keep
from pytest_tbench.launch.ab.pairs import PairResult, run_pair
from pytest_tbench.launch.ab.session import BASE, CURRENT, ABSession
from pytest_tbench.launch.ab.side_process import SideError, SideProcess
from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.launch.pooling import pool
from pytest_tbench.measure.item import throughput
from pytest_tbench.measure.memory_errors import OutOfMemory
from pytest_tbench.measure.pytest_benchmark_api import record_samples, round_rules
from pytest_tbench.models.code import MODEL_CODE
from pytest_tbench.settings.ab import PairBudget
from pytest_tbench.settings.cases import BenchCase

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
        pairs: PairBudget,
        criteria: Sequence[Criterion],
        modules: list[str],
    ) -> None:
        self.benchmark = benchmark
        self.session = session
        self.pairs = pairs
        self.criteria = tuple(criteria)
        self.modules = modules
        self._starting_s = 0.0  # spent starting side processes during the item being measured

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        start, self._starting_s = time.perf_counter(), 0.0
        case = job.case
        rules = _or_fail(case.id, lambda: round_rules(self.benchmark))
        budget, disabled = self.pairs, self.benchmark.disabled
        # Under --benchmark-disable one round per side, in one pair, checks that both sides run.
        rounds = 1 if disabled else paired_rounds(job.rounds, budget.first)
        pair_job = replace(job, rounds=rounds, rules=rules)
        results: list[PairResult] = []
        oom = self._measure_pairs(pair_job, 1 if disabled else budget.first, results)
        if oom is not None:
            return oom
        samples, info, verdicts = self._judged(case, results)
        looks: list[dict[str, Any]] = []
        if budget.sequential and not disabled:  # judge/sequential.py: more pairs for an undecided item
            tests = run_tests(self.session.items, verdicts)
            looks.append(first_look(budget, verdicts, tests))
            if undecided(verdicts, budget.share(0), tests):
                oom = self._measure_pairs(pair_job, budget.most, results)
                if oom is not None:
                    return oom
                samples, info, verdicts = self._judged(case, results)
                looks.append(last_look(budget, len(results)))
        elif not disabled:
            looks.append(last_look(budget, len(results)))
        verdicts = spent(verdicts, looks)
        ab: dict[str, Any] = {
            "sides": self.session.describe(),
            "pairs": len(results),
            "looks": looks,
            "paired_rounds_per_pair": rounds,
            "interleaving": sorted({r.interleaving for r in results}),
            "first_side_per_pair": [r.first for r in results],
            "order": ["".join("B" if s == BASE else "C" for s in r.order) for r in results],
            "verdicts": [v.as_json() for v in verdicts],
            MODEL_CODE: compare_sides(info[AB_BASE], info),
            # Workers that loaded the model for this item; the others kept it from its last item (keep.py).
            "model_loads": sum(o.loaded_model for r in results for o in r.outcomes.values()),
            # The item's own cost: without the side processes it started (the session's first item's, or
            # a larger budget's), which every later item of the session reuses.
            "wall_time_s": time.perf_counter() - start - self._starting_s,
            "sides_start_s": round(self._starting_s, 3),  # 0.0 where the item's sides were running
        }
        profiles = sides_profiles(info)  # --tbench-profile: where the sides' time differs, by operator
        if profiles is not None:
            ab["profile_diff"] = {
                "activity": activity(*profiles),
                "operators": [change.as_json() for change in operator_changes(*profiles)],
            }
        info = info.add(("ab", {AB: ab, "isolated": True}))
        record_samples(self.benchmark, samples)
        timings = [] if disabled else samples
        return Attempt(info, info[SAMPLES_PER_CALL], info[TOKENS_PER_CALL], timings)

    def _measure_pairs(self, job: Job, pairs: int, results: list[PairResult]) -> OutOfMemory | None:
        """Pairs up to ``pairs`` (after those in ``results``), appended to ``results``; the out-of-memory of a
        side that ran out (the item is skipped), or the item's failure where a side failed otherwise."""
        case = job.case
        starting = time.perf_counter()
        processes = _or_fail(case.id, lambda: self.session.started(pairs, self.modules, job.conftests))
        self._starting_s += time.perf_counter() - starting
        for index in range(len(results), pairs):
            sides = processes[index]
            # Each side counts its item's FLOPs in its first pair only (launch/pooling.py keeps that count).
            pair_job = replace(job, count_flops=index == 0)
            result = self._run_pair(case.id, sides, pair_job, BASE if index % 2 == 0 else CURRENT)
            failure = result.failure
            if failure is not None:
                side, outcome = failure
                if outcome.status == "oom":
                    return OutOfMemory(f"{side} side: {outcome.message}")
                raise ItemFailed(f"{case.id}: --tbench-ab: the {side} side failed:\n{outcome.message}")
            if not room_to_keep(list(result.outcomes.values()), case.device):
                for process in sides.values():
                    process.release_worker()
            results.append(result)
        return None

    def _judged(
        self, case: BenchCase, results: list[PairResult]
    ) -> tuple[list[float], Measurement, list[PairedVerdict]]:
        """The current side's samples and measurement (the base side's under ``ab_base``) pooled over the
        pairs, and the item's verdicts on them (none under --benchmark-disable)."""
        samples, current = pool(case, [r.outcomes[CURRENT] for r in results])
        base_samples, base = pool(case, [r.outcomes[BASE] for r in results])
        # Each pair's own item memory, per side: memory is judged pair by pair on it (judge/paired.py).
        per_pair: dict[str, dict[str, Any]] = {CURRENT: {}, BASE: {}}
        for side in (CURRENT, BASE):
            figures = [r.outcomes[side].info.get(PEAK_MEMORY_INCREASE_BYTES) for r in results]
            # Unknown in a pair (another backend's memory where NVML cannot tell): memory is not judged.
            if None not in figures:
                per_pair[side][PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES] = [
                    int(figure or 0) for figure in figures
                ]
        # The median and rates the current side gets from the item runner, so both sides read alike.
        base_median = statistics.median(base_samples) if base_samples else None
        base_rates = throughput(base.samples_per_call, base.tokens_per_call, base_median)
        base = base.add(("ab", {ROUNDS_S: base_samples, **per_pair[BASE], **base_rates}))
        info = current.add(("ab", {**per_pair[CURRENT], AB_BASE: dict(base)}))
        if self.benchmark.disabled:
            return samples, info, []
        # Judged as read back from its JSON entry: `tbench compare RUN.json` judges the same two records.
        entry = {"params": case.as_params(), "extra_info": info, "stats": {"data": samples}}
        return samples, info, judge_paired(case.id, self.criteria, *sides_of(entry))

    def _run_pair(self, item: str, sides: dict[str, SideProcess], job: Job, first: str) -> PairResult:
        """One pair's rounds; measured again, once, with every kept worker ended if it ran out of memory
        while other pairs' workers held their models."""
        result = _or_fail(item, lambda: run_pair(sides, job, first))
        failure = result.failure
        if failure is not None and failure[1].status == "oom" and self.session.release_workers():
            result = _or_fail(item, lambda: run_pair(sides, job, first))
        return result


def _or_fail(item: str, call: Callable[[], T]) -> T:
    """``call()``, or the item's failure naming the side that broke (failed outside the except block: the
    chained traceback would say nothing more)."""
    try:
        return call()
    except (ValueError, SideError) as exc:
        problem = str(exc)
    raise ItemFailed(f"{item}: --tbench-ab: {problem}")
