"""The worker side of every worker launcher: load the model, warm up, run the rounds the parent asks for, send
back what was measured. One protocol for the isolated and several-processes launchers (one job per worker) and
for ``--tbench-ab`` (a pair's worker serves every item of its model in turn, keeping the model loaded).

Imported by the forkserver and by each A/B side's process before any item (with torch and transformers), so a
worker forks ready. Messages (pickled tuples) on the worker's connection:

  <- ("job", job) or the job given at the start
                   -> ("ready",) once loaded and warmed up, or an Outcome with status "oom"/"error" (it ends)
  <- ("rounds", n) -> ("samples", [seconds, ...]): n measured rounds (A/B: one, the sides taking turns)
  <- ("stop",)     -> the job's Outcome: the measured rounds, their records and the item's extra_info
  then another ("job", job), or end-of-file: the worker ends.

Between messages a worker blocks on its connection: it takes no CPU while the other side of a pair measures.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal

from transformers import PretrainedConfig

from pytest_tbench.core.measurement import Measurement
from pytest_tbench.launch.base import Job
from pytest_tbench.launch.conftests import ConftestImportError, ensure
from pytest_tbench.machine.devices import memory_room
from pytest_tbench.measure.item import run_item
from pytest_tbench.measure.memory_errors import is_out_of_memory
from pytest_tbench.measure.rounds import run_rounds
from pytest_tbench.measure.work import WorkWrapper
from pytest_tbench.models.loading import LoadedModel, ModelKey, collect, load_model
from pytest_tbench.models.registry import ResolvedSpec
from pytest_tbench.scenarios import Work, build_work


@dataclass
class Outcome:
    """What a worker sends back: its rounds' samples and the item's measurement, or why it has none."""

    status: Literal["ok", "oom", "error"]
    samples: list[float] = field(default_factory=list)
    info: Measurement = field(default_factory=Measurement)
    records: list[Any] = field(default_factory=list)  # the measured rounds' raw records (Work.records)
    message: str = ""
    loaded_model: bool = True  # False: the model was kept loaded from this worker's previous item
    room: tuple[int, int] | None = (
        None  # (free, total) bytes of the item's device after it (machine/devices.py)
    )


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
        trust_remote_code=job.run.trust_remote_code,
    )


class ModelSlot:
    """The one model a worker holds: kept for the worker's next job of the same model, as the pytest process'
    model cache keeps it for the next item; loaded afresh after a train step changed its weights."""

    def __init__(self) -> None:
        self.key: ModelKey | None = None
        self.loaded: LoadedModel | None = None

    def get(self, job: Job) -> tuple[LoadedModel, bool]:
        """The job's model and whether it was loaded now."""
        key = job.case.model_key
        if self.loaded is not None and self.key == key and not self.loaded.trained:
            return self.loaded, False
        self.release()  # first: the new load's memory holds one model, its own
        self.loaded = load_model(resolved_spec(job), key)
        self.key = key
        return self.loaded, True

    def release(self) -> None:
        if self.loaded is None:
            return
        devices = self.loaded.devices or ((self.key.device,) if self.key is not None else ())
        self.loaded = None
        collect(devices)


def measure(
    job: Job,
    slot: ModelSlot,
    drive: Callable[[Work, LoadedModel], list[float]],
    energy_unavailable: str | None = None,
    at_round_start: Callable[[], None] | None = None,
) -> Outcome:
    """The job's item on the slot's model; ``drive`` runs the warm-up and measured rounds of the work it is
    given (metered) and returns the samples. ``at_round_start``: run last before each round's timed call (a
    tensor-parallel rank's barrier); ``energy_unavailable``: why this worker's rounds are not metered."""
    case = job.case
    try:
        ensure(job.conftests)
        loaded, fresh = slot.get(job)
        work = build_work(loaded, case, job.run)
        if at_round_start is not None:
            work = _StartingWith(work, at_round_start)
        samples: list[float] = []
        records: list[Any] = []

        def rounds(metered: Work) -> None:
            samples.extend(drive(metered, loaded))
            records.extend(work.records(job.warmup))

        # The worker that counts the item's FLOPs (one per item and A/B side) also profiles it.
        profile = job.profile if job.count_flops else None
        info = run_item(
            case, loaded, work, job.rounds, job.warmup, rounds, energy_unavailable, job.count_flops, profile
        )
        # A device-mapped model's room is on several GPUs: not one figure, so such a worker is not kept.
        room = memory_room(case.device) if len(loaded.devices) <= 1 else None
        return Outcome("ok", samples, info, records, loaded_model=fresh, room=room)
    except ConftestImportError as exc:
        return Outcome("error", message=str(exc))
    except Exception as exc:
        # A worker that fails ends (serve), so its memory needs no freeing here: the parent skips the item.
        if is_out_of_memory(exc):
            return Outcome("oom", message=f"{type(exc).__name__}: {exc}")
        return Outcome("error", message=traceback.format_exc())


def run_job(
    job: Job, at_round_start: Callable[[], None] | None = None, energy_unavailable: str | None = None
) -> Outcome:
    """The job's warm-up and rounds at once, on a model loaded for it (a tensor-parallel rank)."""

    def drive(metered: Work, loaded: LoadedModel) -> list[float]:
        return run_rounds(metered, job.case.device, job.rounds, job.warmup, job.rules, loaded.devices)

    return measure(job, ModelSlot(), drive, energy_unavailable, at_round_start)


class _StartingWith(WorkWrapper):
    """A work that also calls ``at_round_start`` after its own ``before_round``."""

    def __init__(self, inner: Work, at_round_start: Callable[[], None]) -> None:
        super().__init__(inner)
        self.at_round_start = at_round_start

    def before_round(self) -> None:
        self.inner.before_round()
        self.at_round_start()


class Stopped(BaseException):
    """The parent ended the conversation (end-of-file) before the job's stop: no failure of the item's, so
    not an Exception that ``measure`` would report."""


def serve(conn: Connection, job: Job | None = None, energy_unavailable: str | None = None) -> None:
    """Serve jobs on ``conn`` (``job``: the first, else read from it) until the parent closes it or a job
    fails: each job's rounds run as the parent asks (module docstring)."""
    slot = ModelSlot()
    try:
        while True:
            if job is None:
                job = conn.recv()[1]
            outcome = measure(job, slot, _conversation(conn, job), energy_unavailable)
            conn.send(outcome)
            if outcome.status != "ok":
                return
            job = None
    except (EOFError, OSError, Stopped):
        return  # the parent is done with this worker (or gave up on the item)
    finally:
        conn.close()


def _conversation(conn: Connection, job: Job) -> Callable[[Work, LoadedModel], list[float]]:
    """A ``drive`` that warms up, says so, and runs measured rounds whenever the parent asks, until it says
    stop."""

    def drive(metered: Work, loaded: LoadedModel) -> list[float]:
        device, rules = job.case.device, job.rules
        # Every GPU of a device-mapped model is synchronised, as in the pytest process.
        run_rounds(metered, device, 0, job.warmup, rules, loaded.devices)  # warm-up only
        conn.send(("ready",))
        samples: list[float] = []
        while True:
            try:
                message = conn.recv()
            except EOFError:
                raise Stopped from None
            if message[0] != "rounds":
                return samples
            measured = run_rounds(metered, device, message[1], 0, rules, loaded.devices)
            samples.extend(measured)
            conn.send(("samples", measured))

    return drive


def worker_main(conn: Connection, job: Job) -> None:
    """An isolated worker: ``job``, then whatever the parent sends."""
    serve(conn, job)
