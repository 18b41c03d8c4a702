"""The worker side of ``--tbench-isolate``: load the model, run the rounds, send back what was measured.

Imported by the forkserver before any item (with torch and transformers), so each worker forks ready.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

from transformers import PretrainedConfig

from ..cases import BenchCase
from ..config import TBenchConfig
from ..devices import synchronize
from ..measurement import measure_item
from ..memory_errors import is_out_of_memory
from ..models.loading import load_model
from ..models.registry import ResolvedSpec, SpecKind
from ..scenarios import Work, build_work


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, all of it picklable: a user's config factory becomes the config it made."""

    case: BenchCase
    spec: str
    kind: SpecKind
    config: PretrainedConfig | None  # for random-weight models
    target: str | None  # for from_pretrained models
    settings: TBenchConfig
    rounds: int
    warmup: int

    def resolved(self) -> ResolvedSpec:
        config = self.config
        make_config: Callable[[], PretrainedConfig] | None = (
            (lambda: copy.deepcopy(config)) if config is not None else None
        )
        return ResolvedSpec(self.spec, self.kind, make_config=make_config, target=self.target)


@dataclass
class Outcome:
    status: Literal["ok", "oom", "error"]
    samples: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)  # the measured rounds' raw records (Work.records)
    message: str = ""


def run_rounds(work: Work, device: str, rounds: int, warmup: int) -> list[float]:
    """The same loop as pytest-benchmark's pedantic(iterations=1): untimed setup and teardown around each
    timed call, warm-up rounds first and not kept. Returns seconds per measured call."""
    samples = []
    for index in range(warmup + rounds):
        synchronize(device)
        work.before_round()
        start = time.perf_counter()
        work.call()
        synchronize(device)
        elapsed = time.perf_counter() - start
        work.after_round()
        if index >= warmup:
            samples.append(elapsed)
    return samples


def run_job(job: Job) -> Outcome:
    case = job.case
    try:
        loaded = load_model(job.resolved(), case.model_key)
        work = build_work(loaded, case, job.settings)
        samples: list[float] = []
        records: list[Any] = []

        def rounds() -> None:
            samples.extend(run_rounds(work, case.device, job.rounds, job.warmup))
            records.extend(work.records(job.warmup))

        info = measure_item(case, loaded, work, job.rounds, job.warmup, rounds)
        return Outcome("ok", samples, info, records)
    except Exception as exc:
        if is_out_of_memory(exc):
            return Outcome("oom", message=f"{type(exc).__name__}: {exc}")
        return Outcome("error", message=traceback.format_exc())


def worker_main(conn: Connection, job: Job) -> None:
    try:
        conn.send(run_job(job))
    finally:
        conn.close()
