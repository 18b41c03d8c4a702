"""The several-processes launcher (--tbench-processes N): the item's rounds split over N fresh workers, one
after another, and pooled into one result (``pooling.py`` says why and how)."""

from __future__ import annotations

from typing import Any

from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.launch.isolated import measure_in_workers
from pytest_tbench.launch.pooling import split_rounds
from pytest_tbench.measure.memory_errors import OutOfMemory


class ProcessesLauncher:
    def __init__(self, benchmark: Any, processes: int) -> None:
        self.benchmark = benchmark
        self.processes = processes

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        return measure_in_workers(self.benchmark, job, split_rounds(job.rounds, self.processes))
