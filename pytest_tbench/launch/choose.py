"""Which launcher measures an item, chosen from the settings in this one place (``LAUNCHERS``, by the name
--tbench-launcher takes), and the job it is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from pytest_tbench.settings.config import LAUNCHER_AUTO, TBenchConfig

if TYPE_CHECKING:
    from pytest_tbench.launch.ab.session import ABSession


@dataclass(frozen=True)
class Where:
    """What a launcher is made from: the item's pytest-benchmark fixture, the session's settings and (for a
    launcher of this process) the loader of the session's cached model."""

    benchmark: Any
    settings: TBenchConfig
    load: Callable[[], LoadedModel]


@dataclass(frozen=True)
class LauncherRow:
    """A launcher that ``--tbench-launcher NAME`` names: how it is made, whether it takes an item's job to
    worker processes (then the job carries the model's config and the session's conftests, and a user's
    ``tbench.measure()`` call stays in this process), and what in the settings contradicts it."""

    make: Callable[[Where], Launcher]
    workers: bool
    conflict: Callable[[TBenchConfig], str | None] = lambda settings: None


def _asks_for_workers(settings: TBenchConfig) -> str | None:
    launch = settings.launch
    if launch.isolate or launch.processes > 1:
        return "--tbench-isolate / --tbench-processes N ask for worker processes"
    return None


def _asks_for_several(settings: TBenchConfig) -> str | None:
    if settings.launch.processes > 1:
        return f"--tbench-processes {settings.launch.processes} spreads rounds over several workers"
    return None


def _needs_several(settings: TBenchConfig) -> str | None:
    if settings.launch.processes < 2:
        return "it spreads rounds over --tbench-processes N workers: set N >= 2"
    return None


# Every launcher an item's scenario can run under, by the name --tbench-launcher takes. A new launcher is
# its module and a row here. Tensor-parallel items (torchrun, chosen by their --tbench-tp axis) and
# --tbench-ab's paired sides (launch/ab/) are chosen by their own settings.
LAUNCHERS: dict[str, LauncherRow] = {
    "inprocess": LauncherRow(lambda w: InProcessLauncher(w.benchmark, w.load), False, _asks_for_workers),
    "isolated": LauncherRow(lambda w: IsolatedLauncher(w.benchmark), True, _asks_for_several),
    "processes": LauncherRow(
        lambda w: ProcessesLauncher(w.benchmark, w.settings.launch.processes), True, _needs_several
    ),
}


def launcher_name(settings: TBenchConfig) -> str:
    """The launcher --tbench-launcher names; ``auto``: the one --tbench-isolate / --tbench-processes say."""
    if settings.launch.launcher != LAUNCHER_AUTO:
        return settings.launch.launcher
    if settings.launch.processes > 1:
        return "processes"
    return "isolated" if settings.launch.isolate else "inprocess"


def launcher_error(settings: TBenchConfig) -> str | None:
    """What is wrong with the session's choice of launcher, for a usage error; None: nothing."""
    name = settings.launch.launcher
    if name == LAUNCHER_AUTO:
        return None
    if name not in LAUNCHERS:
        return f"--tbench-launcher {name!r} is not a launcher; valid: {LAUNCHER_AUTO}, {', '.join(LAUNCHERS)}"
    if settings.ab.side is not None:
        return f"--tbench-launcher {name} and --tbench-ab: A/B runs its own side processes; drop one"
    conflict = LAUNCHERS[name].conflict(settings)
    return f"--tbench-launcher {name}: {conflict}; drop one" if conflict else None


def runs_in_workers(settings: TBenchConfig) -> bool:
    """Whether the session's items run in worker processes: its launcher's, or A/B's side processes."""
    return settings.ab.side is not None or LAUNCHERS[launcher_name(settings)].workers


def in_workers(settings: TBenchConfig, work: Work | None, tp: str = TP_NONE) -> bool:
    """Whether an item runs in worker processes (a worker launcher, or tensor-parallel ranks): only a
    scenario's work can (a user's call is a closure, which cannot move to another process)."""
    return (runs_in_workers(settings) or tp != TP_NONE) and work is None


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
    if work is not None:
        return InProcessLauncher(benchmark, load, work)
    if ab is not None:
        from pytest_tbench.core.criteria import DEFAULT_CRITERIA, parse_criteria
        from pytest_tbench.launch.ab.launcher import ABLauncher
        from pytest_tbench.launch.preload import preload_modules

        criteria = settings.gate.criteria or parse_criteria(DEFAULT_CRITERIA)
        return ABLauncher(benchmark, ab, settings.ab.pairs, criteria, preload_modules())
    return LAUNCHERS[launcher_name(settings)].make(Where(benchmark, settings, load))


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
