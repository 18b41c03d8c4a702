"""The worker side of ``--tbench-isolate``: load the model, run the rounds, send back what was measured.

Imported by the forkserver before any item (with torch and transformers), so each worker forks ready.
"""

from __future__ import annotations

import copy
import gc
import pkgutil
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

DEFAULT_TIMER = "time.perf_counter"  # pytest-benchmark's default --benchmark-timer


@dataclass(frozen=True)
class RoundRules:
    """pytest-benchmark's rules for a timed call, which a worker follows as pedantic would in-process: the
    clock (``--benchmark-timer``, by dotted name, since the function itself may not pickle) and whether the
    garbage collector is off while a call is timed (``--benchmark-disable-gc``)."""

    timer: str = DEFAULT_TIMER
    disable_gc: bool = False


def timer_name(timer: Callable[[], float]) -> str:
    """The dotted name that imports ``timer`` again in a worker."""
    module, name = getattr(timer, "__module__", None), getattr(timer, "__qualname__", None)
    if module and name:
        dotted = f"{module}.{name}"
        try:
            if load_timer(dotted) is timer:
                return dotted
        except (ImportError, AttributeError, ValueError, TypeError):
            pass
    raise ValueError(
        f"--benchmark-timer {timer!r} cannot be imported by name in a worker process (--tbench-isolate / "
        "--tbench-processes): use a module-level function given in dotted form, such as time.perf_counter"
    )


def load_timer(dotted: str) -> Callable[[], float]:
    """The timer a dotted name stands for (the module is its longest importable prefix)."""
    target = pkgutil.resolve_name(dotted)
    if not callable(target):
        raise TypeError(f"timer {dotted} is {target!r}, not a function")
    return target  # type: ignore[no-any-return]


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
    rules: RoundRules = RoundRules()

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


def run_rounds(
    work: Work, device: str, rounds: int, warmup: int, rules: RoundRules = RoundRules()
) -> list[float]:
    """The same loop as pytest-benchmark's pedantic(iterations=1): untimed setup and teardown around each
    timed call, warm-up rounds first and not kept; each call timed with ``rules.timer`` and, under
    ``rules.disable_gc``, with the garbage collector off for that call only (as pytest-benchmark's runner
    does). Returns seconds per measured call."""
    timer = load_timer(rules.timer)
    samples = []
    for index in range(warmup + rounds):
        synchronize(device)
        work.before_round()
        gc_was_enabled = gc.isenabled()
        if rules.disable_gc:
            gc.disable()
        try:
            start = timer()
            work.call()
            synchronize(device)
            elapsed = timer() - start
        finally:
            if gc_was_enabled:
                gc.enable()
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
            samples.extend(run_rounds(work, case.device, job.rounds, job.warmup, job.rules))
            records.extend(work.records(job.warmup))

        info = measure_item(case, loaded, work, job.rounds, job.warmup, rounds)
        return Outcome("ok", samples, info, records)
    except Exception as exc:
        # A worker serves one item and exits, so its memory needs no freeing here: the parent skips the item.
        if is_out_of_memory(exc):
            return Outcome("oom", message=f"{type(exc).__name__}: {exc}")
        return Outcome("error", message=traceback.format_exc())


def worker_main(conn: Connection, job: Job) -> None:
    try:
        conn.send(run_job(job))
    finally:
        conn.close()
