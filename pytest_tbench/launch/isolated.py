"""The isolated launcher (--tbench-isolate): the item in one fresh worker process, its timings handed to
pytest-benchmark as if pedantic had taken them. ``measure_in_workers`` is the path every worker launcher takes
(the several-processes one too): start the workers one after another, so that they never compete for the
machine, and turn what they report into an attempt."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from pytest_tbench.core.errors import ItemFailed
from pytest_tbench.core.metric_table import SAMPLES_PER_CALL, TOKENS_PER_CALL
from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.launch.forkserver import ItemTimedOut, WorkerDied, run_isolated
from pytest_tbench.launch.pooling import pool
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.measure.memory_errors import OutOfMemory
from pytest_tbench.measure.pytest_benchmark_api import record_samples, round_rules


class IsolatedLauncher:
    def __init__(self, benchmark: Any) -> None:
        self.benchmark = benchmark

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        return measure_in_workers(self.benchmark, job, [job.rounds])


def measure_in_workers(benchmark: Any, job: Job, shares: list[int]) -> Attempt | OutOfMemory:
    """``job`` in one worker per entry of ``shares`` (its measured rounds), pooled into one attempt."""
    start = time.perf_counter()
    try:
        rules = round_rules(benchmark)
    except ValueError as exc:
        raise ItemFailed(f"{job.case.id}: {exc}") from None
    outcomes = []
    for index, share in enumerate(shares):
        outcome = run_worker(replace(job, rounds=share, rules=rules, count_flops=index == 0))
        if isinstance(outcome, OutOfMemory):
            return outcome
        outcomes.append(outcome)
    samples, pooled = pool(job.case, outcomes)
    info = pooled.add(("processes", {"isolated": True, "worker_wall_time_s": time.perf_counter() - start}))
    record_samples(benchmark, samples)
    timings = [] if benchmark.disabled else samples
    return Attempt(info, info[SAMPLES_PER_CALL], info[TOKENS_PER_CALL], timings)


def run_worker(job: Job) -> Outcome | OutOfMemory:
    """One worker's outcome; a worker that raised, or died other than by SIGKILL, fails the item."""
    try:
        outcome = run_isolated(job)
    except ItemTimedOut as late:
        raise ItemFailed(f"{job.case.id}: {late}; the rest of the session goes on") from None
    except WorkerDied as died:
        if not died.killed:
            raise ItemFailed(f"{job.case.id}: {died}; the rest of the session goes on") from None
        return OutOfMemory(died.describe())
    if outcome.status == "oom":
        return OutOfMemory(outcome.message)
    if outcome.status == "error":
        raise ItemFailed(f"{job.case.id}: the isolated worker raised:\n{outcome.message}")
    return outcome
