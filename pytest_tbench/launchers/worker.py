"""The worker side of ``--tbench-isolate``: load the model, run the rounds, send back what was measured.

Imported by the forkserver before any item (with torch and transformers), so each worker forks ready.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any, Literal

from transformers import PretrainedConfig

from ..memory_errors import is_out_of_memory
from ..models.loading import load_model
from ..models.registry import ResolvedSpec
from ..scenarios import Work, build_work
from .base import Job
from .conftests import ConftestImportError, ensure
from .item import run_item
from .rounds import run_rounds


@dataclass
class Outcome:
    """What a worker sends back: its rounds' samples and extra_info, or why it has none."""

    status: Literal["ok", "oom", "error"]
    samples: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    records: list[Any] = field(default_factory=list)  # the measured rounds' raw records (Work.records)
    message: str = ""


def resolved_spec(job: Job) -> ResolvedSpec:
    """The job's model source as the loader takes it: a fresh copy of the config per load, as a factory
    gives."""
    model_config = job.model_config
    make_config: Callable[[], PretrainedConfig] | None = (
        (lambda: copy.deepcopy(model_config)) if model_config is not None else None
    )
    return ResolvedSpec(
        job.spec,
        job.kind,
        make_config=make_config,
        target=job.target,
        trust_remote_code=job.settings.trust_remote_code,
    )


def run_job(
    job: Job, at_round_start: Callable[[], None] | None = None, energy_unavailable: str | None = None
) -> Outcome:
    """``at_round_start``: run last before each round's timed call (a tensor-parallel rank's barrier, so that
    the ranks start each round together); ``energy_unavailable``: why this worker's rounds are not metered."""
    case = job.case
    try:
        ensure(job.conftests)
        loaded = load_model(resolved_spec(job), case.model_key)
        work = build_work(loaded, case, job.settings)
        if at_round_start is not None:
            work = _starting_with(work, at_round_start)
        samples: list[float] = []
        records: list[Any] = []

        def rounds(metered: Work) -> None:
            samples.extend(
                run_rounds(metered, case.device, job.rounds, job.warmup, job.rules, loaded.devices)
            )
            records.extend(work.records(job.warmup))

        info = run_item(case, loaded, work, job.rounds, job.warmup, rounds, energy_unavailable)
        return Outcome("ok", samples, info, records)
    except ConftestImportError as exc:
        return Outcome("error", message=str(exc))
    except Exception as exc:
        # A worker serves one item and exits, so its memory needs no freeing here: the parent skips the item.
        if is_out_of_memory(exc):
            return Outcome("oom", message=f"{type(exc).__name__}: {exc}")
        return Outcome("error", message=traceback.format_exc())


def _starting_with(work: Work, at_round_start: Callable[[], None]) -> Work:
    def before_round() -> None:
        work.before_round()
        at_round_start()

    return replace(work, before_round=before_round)


def worker_main(conn: Connection, job: Job) -> None:
    try:
        conn.send(run_job(job))
    finally:
        conn.close()
