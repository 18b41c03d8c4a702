"""The several-processes launcher (--tbench-processes N): the item's rounds split over N fresh workers, one
after another, and pooled into one result (``pooling.py`` says why and how)."""

from __future__ import annotations

from typing import Any

from ..memory_errors import OutOfMemory
from .base import Attempt, Job
from .isolated import measure_in_workers
from .pooling import split_rounds


class ProcessesLauncher:
    def __init__(self, benchmark: Any, processes: int) -> None:
        self.benchmark = benchmark
        self.processes = processes

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        return measure_in_workers(self.benchmark, job, split_rounds(job.rounds, self.processes))
