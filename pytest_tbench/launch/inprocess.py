"""The in-process launcher: the item's rounds in the pytest process, timed by pytest-benchmark's pedantic,
on the model the session's cache loaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.measure.item import run_item
from pytest_tbench.measure.memory_errors import OutOfMemory, catch_out_of_memory
from pytest_tbench.measure.rounds import RoundBody, run_with_pedantic
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.scenarios import Work, build_work


class InProcessLauncher:
    """``work``: a user's call (``tbench.measure``), which a worker could not receive; None: the case's
    scenario, built anew for every attempt."""

    def __init__(self, benchmark: Any, load: Callable[[], LoadedModel], work: Work | None = None) -> None:
        self.benchmark = benchmark
        self._load = load
        self._work = work

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        case = job.case
        loaded = self._load()  # once: a train item's next load would be a fresh copy, not the one measured
        work = self._work if self._work is not None else build_work(loaded, case, job.run)
        result = catch_out_of_memory(
            lambda: run_item(
                case,
                loaded,
                work,
                job.rounds,
                job.warmup,
                lambda metered: run_with_pedantic(
                    self.benchmark, RoundBody(metered, case.device, loaded.devices), job.rounds, job.warmup
                ),
                profile=job.profile,
            )
        )
        if isinstance(result, OutOfMemory):
            return result
        metadata = getattr(self.benchmark, "stats", None)
        timings = list(metadata.stats.data) if metadata is not None else []
        return Attempt(result, work.samples, work.tokens, timings)
