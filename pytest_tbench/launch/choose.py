"""Which launcher measures an item, chosen from the settings in this one place, and the job it is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_tbench.core.axes import TP_NONE
from pytest_tbench.core.errors import ItemSkipped
from pytest_tbench.launch.base import Job, Launcher
from pytest_tbench.launch.conftests import Conftest
from pytest_tbench.launch.inprocess import InProcessLauncher
from pytest_tbench.launch.isolated import IsolatedLauncher
from pytest_tbench.launch.processes import ProcessesLauncher
from pytest_tbench.measure.profile import ProfileRequest
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.models.registry import ResolvedSpec
from pytest_tbench.scenarios import Work
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig

if TYPE_CHECKING:
    from pytest_tbench.launch.ab.session import ABSession


def in_workers(settings: TBenchConfig, work: Work | None, tp: str = TP_NONE) -> bool:
    """Whether an item runs in worker processes (isolated, or tensor-parallel ranks): only a scenario's work
    can (a user's call is a closure, which cannot move to another process)."""
    return (settings.isolated or tp != TP_NONE) and work is None


def choose_launcher(
    settings: TBenchConfig,
    benchmark: Any,
    load: Callable[[], LoadedModel],
    work: Work | None = None,
    ab: ABSession | None = None,
    tp: str = TP_NONE,
) -> Launcher:
    """The launcher of an item whose pytest-benchmark fixture is ``benchmark`` and whose model ``load``
    gives (in-process); ``work``: a user's call instead of the case's scenario; ``ab``: the session's two
    sides under --tbench-ab; ``tp``: the item's tensor-parallel ranks."""
    if tp != TP_NONE:
        if work is not None or ab is not None:
            what = "a tbench.measure() call (a closure of this process)" if work else "--tbench-ab"
            raise ItemSkipped(
                f"--tbench-tp runs the scenario in one process per rank: {what} cannot run there"
            )
        from pytest_tbench.launch.torchrun import (
            TorchrunLauncher,  # torch.distributed's launcher only when asked for
        )

        return TorchrunLauncher(benchmark, int(tp))
    if not in_workers(settings, work):
        return InProcessLauncher(benchmark, load, work)
    if ab is not None:
        from pytest_tbench.core.criteria import DEFAULT_CRITERIA, parse_criteria
        from pytest_tbench.launch.ab.launcher import ABLauncher
        from pytest_tbench.launch.preload import preload_modules

        criteria = settings.gate.criteria or parse_criteria(DEFAULT_CRITERIA)
        return ABLauncher(benchmark, ab, settings.ab.pairs, criteria, preload_modules())
    if settings.launch.processes > 1:
        return ProcessesLauncher(benchmark, settings.launch.processes)
    return IsolatedLauncher(benchmark)


def job_for(
    case: BenchCase,
    resolved: ResolvedSpec,
    settings: TBenchConfig,
    rounds: int,
    warmup: int,
    work: Work | None = None,
    conftests: tuple[Conftest, ...] = (),
    nodeid: str = "",
) -> Job:
    """The job ``choose_launcher``'s launcher takes: the model's config is made only for a worker (in-process,
    the session's model cache made it), which also imports the session's ``conftests`` first. ``nodeid``
    names the item's profile trace (--tbench-profile)."""
    workers = in_workers(settings, work, case.tp)
    make_config = resolved.make_config if workers else None
    return Job(
        case=case,
        spec=resolved.spec,
        kind=resolved.kind,
        model_config=make_config() if make_config is not None else None,
        target=resolved.target,
        run=settings.run,
        rounds=rounds,
        item_timeout=settings.launch.item_timeout,
        profile=(
            ProfileRequest(
                settings.measure.profile,
                settings.measure.profile_rounds,
                nodeid or case.id,
                memory=settings.measure.profile_memory,
            )
            if settings.measure.profile is not None
            else None
        ),
        warmup=warmup,
        conftests=conftests if workers else (),
    )
