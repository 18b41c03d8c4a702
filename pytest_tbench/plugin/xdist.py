"""A tbench session spread over pytest-xdist workers (``-n N``).

The controller plans each worker's share of the machine (its GPUs as ``CUDA_VISIBLE_DEVICES``, and under
``--tbench-allow-shared-cpu`` its cores). The GPUs go into each worker's xdist spec
(``popen//env:CUDA_VISIBLE_DEVICES=...``), so that they are set when its interpreter starts, before any
conftest.py can start CUDA; the rest goes over in xdist's ``workerinput``, with the planned GPUs' UUIDs, which
the worker checks at its first CUDA item.

Under ``--dist loadgroup`` every item gets an ``xdist_group`` mark naming its model spec, so that the items of
one model go to one worker. It is not made the default: pytest-xdist 3.8 hangs a loadgroup session whose
crashed worker is replaced (pytest-xdist#1323 and #1327, fixed after 3.8.0), and on pytest 9.2 it does not
group at all (#1386). Under the default ``--dist load`` a worker keeps one model loaded at a time
(``ModelCache.release_others``), as it cannot know which item of a model it gets last.

pytest-benchmark disables its fixture under xdist, as it cannot gather results: a worker re-enables it for
tbench items (measure_in_worker), so an item is measured exactly as in one process, and
saves nothing itself. Each item's results travel to the controller on its teardown report, as an attribute
that xdist serialises with the report: per item, so that the items a worker measured before it crashed are
already with the controller (``workeroutput`` arrives only at a clean shutdown), and not as
``user_properties``, which --junitxml would copy into its XML. The controller adds them to its own session,
which then prints the table, writes the JSON, autosaves, gates and reports as one process would.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.metric_table import VISIBLE_DEVICES, WORKER_CPUS, XDIST_WORKER
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.machine.devices import cuda_uuids, resolve_device
from pytest_tbench.plugin.assign import (
    check_gpu_count,
    cpus_for_worker,
    gpus_for_worker,
    parent_visible_gpus,
    worker_index,
)
from pytest_tbench.plugin.pytest_benchmark_session import add_received, entries_of
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.show.results import ItemResult

if TYPE_CHECKING:
    from pytest_tbench.plugin.state import SessionState

PLAN_KEY = "tbench"  # the worker's share, in xdist's workerinput
PAYLOAD = "tbench_item"  # the report attribute that carries an item's results to the controller


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share: its GPUs (None: as inherited) and cores (None: not pinned), and the UUIDs of its
    GPUs as the controller's torch sees them (None: not known), which the worker checks its own against."""

    gpus: tuple[str, ...] | None = None
    cpus: tuple[int, ...] | None = None
    uuids: tuple[str | None, ...] | None = None

    def to_input(self) -> dict[str, Any]:
        return {
            "gpus": list(self.gpus) if self.gpus is not None else None,
            "cpus": list(self.cpus) if self.cpus is not None else None,
            "uuids": list(self.uuids) if self.uuids is not None else None,
        }

    @classmethod
    def from_input(cls, data: dict[str, Any]) -> WorkerPlan:
        gpus, cpus, uuids = data.get("gpus"), data.get("cpus"), data.get("uuids")
        return cls(
            tuple(gpus) if gpus is not None else None,
            tuple(cpus) if cpus is not None else None,
            tuple(uuids) if uuids is not None else None,
        )


def expanded_specs(tx: Sequence[str] | None) -> list[str]:
    """xdist's ``--tx`` list with ``N*spec`` written out, one entry per worker."""
    specs: list[str] = []
    for spec in tx or ():
        count, star, rest = spec.partition("*")
        specs.extend([rest] * int(count) if star and count.isdigit() else [spec])
    return specs


def sets_visible_devices(spec: str) -> bool:
    """Whether an xdist spec gives its worker CUDA_VISIBLE_DEVICES itself (``popen//env:CUDA_...=1``)."""
    return any(part.startswith("env:CUDA_VISIBLE_DEVICES=") for part in spec.split("//"))


def with_visible_devices(specs: Sequence[str], plans: Sequence[WorkerPlan]) -> list[str]:
    """xdist's specs, each with its worker's GPUs as ``//env:CUDA_VISIBLE_DEVICES=...``: execnet sets the
    variable in the worker's interpreter before xdist's code runs there, so before any conftest.py is
    imported. CUDA reads it when its driver starts, which a conftest's ``torch.cuda.is_available()`` does:
    set in ``pytest_configure`` it would come too late, and every worker would run on the first GPU."""
    return [
        spec if plan.gpus is None else f"{spec}//env:CUDA_VISIBLE_DEVICES={','.join(plan.gpus)}"
        for spec, plan in zip(specs, plans, strict=True)
    ]


def planned_uuids(
    plans: Sequence[WorkerPlan], visible: Sequence[str], uuids: Sequence[str | None]
) -> list[WorkerPlan]:
    """``plans`` with each worker's GPU UUIDs: its entries' positions in the parent's visible list, which is
    torch's order in the parent (``uuids``: the parent's torch devices' UUIDs; empty: not known)."""
    if len(uuids) != len(visible):
        return list(plans)
    position = {entry: index for index, entry in enumerate(visible)}
    return [
        plan if plan.gpus is None else replace(plan, uuids=tuple(uuids[position[gpu]] for gpu in plan.gpus))
        for plan in plans
    ]


def plan_workers(
    workers: int,
    devices: set[str],
    settings: TBenchConfig,
    visible_gpus: Sequence[str],
    cpus: Sequence[int],
    explicit_gpus: bool,
) -> list[WorkerPlan]:
    """Each worker's share (OptionError: the machine cannot give every worker its own GPUs). Cores are
    pinned only under --tbench-allow-shared-cpu; without it, CPU items are refused in the workers, once they
    know whether there are any (``refuse_shared_cpu``), so that ordinary tests still run under -n."""
    uses_cpu = "cpu" in devices and settings.launch.allow_shared_cpu
    uses_cuda = any(device.startswith("cuda") for device in devices)
    if uses_cuda and not explicit_gpus:
        check_gpu_count(workers, settings.launch.gpus_per_worker, visible_gpus)
    plans = []
    for index in range(workers):
        gpus = None
        if uses_cuda and not explicit_gpus:
            gpus = tuple(gpus_for_worker(index, settings.launch.gpus_per_worker, visible_gpus))
        pinned = tuple(cpus_for_worker(index, workers, cpus)) if uses_cpu and workers > 1 else None
        plans.append(WorkerPlan(gpus, pinned))
    return plans


def session_devices(settings: TBenchConfig) -> set[str]:
    """The devices the session's items run on (``auto`` resolved), benchmark list entries' included."""
    names = set(settings.sweep.devices)
    for entry in settings.sweep.benchmarks:
        names.update(entry.config.sweep.devices)
    return {resolve_device(name) for name in names}


def is_controller(config: pytest.Config) -> bool:
    """This process hands items to xdist workers (and collects nothing itself)."""
    return (
        not hasattr(config, "workerinput")
        and config.pluginmanager.hasplugin("xdist")
        and config.getoption("dist", "no") != "no"
        and not config.getoption("collectonly")
    )


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def start_controller(config: pytest.Config, settings: TBenchConfig) -> None:
    """Plan the workers and register the hooks that hand them their share and receive their items."""
    if not is_controller(config):
        return
    if settings.ab.side is not None:
        # Each worker would open its own base side (worktree, processes) and keep the pairs it measured, which
        # the controller's A/B table and verdict summary never see; and on CPU, two workers' pairs at once
        # would disturb the very interleaving that makes A/B fair.
        raise pytest.UsageError(
            "--tbench-ab does not run under pytest-xdist (-n/--dist): it interleaves the two sides in one "
            "session. Run it without -n; to spread an A/B sweep over GPUs or machines, give each process its "
            "share with pytest-split (--splits N --group K, each with CUDA_VISIBLE_DEVICES set) and join the "
            "runs with tbench merge"
        )
    specs = expanded_specs(config.getoption("tx"))
    import torch  # only here: the controller counts the GPUs it may hand out, and initialises no device

    visible = parent_visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
    try:
        plans = plan_workers(
            len(specs),
            session_devices(settings),
            settings,
            visible,
            sorted(os.sched_getaffinity(0)),
            any(sets_visible_devices(spec) for spec in specs),
        )
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if any(plan.gpus is not None for plan in plans):
        plans = planned_uuids(plans, visible, cuda_uuids())
        config.option.tx = with_visible_devices(specs, plans)  # read by xdist at session start
    config.pluginmanager.register(XdistController(config, plans), "tbench-xdist-controller")
    config.pluginmanager.register(SharedCpuRefusal(), "tbench-xdist-shared-cpu")


class XdistController:
    """The controller's hooks: each worker's share on its way out, each item's results on their way in."""

    def __init__(self, config: pytest.Config, plans: list[WorkerPlan]) -> None:
        self._config = config
        self._plans = plans
        self._by_spec: dict[int, WorkerPlan] = {}  # a restarted worker reuses its spec, and gets its share

    def pytest_configure_node(self, node: Any) -> None:
        spec = node.gateway.spec
        plan = self._by_spec.get(id(spec))
        if plan is None:
            plan = self._plans[worker_index(node.gateway.id) % len(self._plans)]
            self._by_spec[id(spec)] = plan
        node.workerinput[PLAN_KEY] = plan.to_input()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, PAYLOAD, None)
        if isinstance(payload, str):
            from pytest_tbench.plugin.state import STATE

            receive(self._config, self._config.stash[STATE], payload)


def apply_worker_plan(config: pytest.Config) -> None:
    """In a worker, before anything touches CUDA: take the share the controller planned."""
    data = getattr(config, "workerinput", {}).get(PLAN_KEY)
    if data is None:
        return
    plan = WorkerPlan.from_input(data)
    planned = ",".join(plan.gpus or ())
    if plan.gpus is not None and os.environ.get("CUDA_VISIBLE_DEVICES") != planned:
        # Not set at the worker's start (its spec was not the controller's): set it now, if not too late.
        import torch

        if torch.cuda.is_initialized():  # the variable would be read too late to confine the worker
            raise pytest.UsageError(
                "pytest-tbench: CUDA was initialised in the xdist worker before its GPUs could be set; a "
                "conftest.py that touches CUDA at import defeats --tbench-gpus-per-worker: move it into a "
                "fixture, or give each worker its GPUs with --tx popen//env:CUDA_VISIBLE_DEVICES=i"
            )
        os.environ["CUDA_VISIBLE_DEVICES"] = planned
    if plan.cpus is not None:
        import torch

        os.sched_setaffinity(0, plan.cpus)
        torch.set_num_threads(len(plan.cpus))
        os.environ["OMP_NUM_THREADS"] = str(len(plan.cpus))  # the item's own worker processes, if isolated


# A worker's GPU check, once: () not yet made, else (None,) or (the problem,).
_GPU_CHECK: list[str | None] = []


def gpu_problem(planned: Sequence[str | None], seen: Sequence[str | None], worker: str) -> str | None:
    """What is wrong when a worker's torch does not see the GPUs planned for it (by UUID); None: nothing."""
    if tuple(seen) == tuple(planned):
        return None
    return (
        f"pytest-tbench: xdist worker {worker} was planned the GPUs {', '.join(map(str, planned))} but its "
        f"torch sees {', '.join(map(str, seen)) or 'none'}: its items would run on another worker's GPU. "
        "Something changed CUDA_VISIBLE_DEVICES in the worker, or CUDA started before it was set; give each "
        "worker its GPUs with --tx popen//env:CUDA_VISIBLE_DEVICES=i instead"
    )


def check_worker_gpus(config: pytest.Config) -> None:
    """In a worker, before each CUDA item: the GPUs its torch sees must be the ones planned for it, else the
    item fails (each of them: one worker's wrong GPUs must not be timed as right). Compared once."""
    if not _GPU_CHECK:
        data = getattr(config, "workerinput", {}).get(PLAN_KEY) or {}
        planned = WorkerPlan.from_input(data).uuids
        worker = str(getattr(config, "workerinput", {}).get("workerid"))
        _GPU_CHECK.append(None if planned is None else gpu_problem(planned, cuda_uuids(), worker))
    if _GPU_CHECK[0] is not None:
        pytest.fail(_GPU_CHECK[0], pytrace=False)


def model_group(config: pytest.Config, case: BenchCase) -> tuple[Any, ...]:
    """An item's ``xdist_group`` mark, in a worker of a ``--dist loadgroup`` session (the marker exists only
    where xdist is installed)."""
    if is_worker(config) and getattr(config.option, "loadgroup", False):
        return (pytest.mark.xdist_group(case.model),)
    return ()


def check_grouping(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Say so (once, from gw0) when xdist did not group the items by model: pytest-xdist up to 3.8 marks a
    group by appending ``@group`` to node ids, which pytest 9.2 no longer lets it do (pytest-xdist#1386), and
    the items then spread like ``--dist load``: results stay right, each worker loads every model it gets."""
    if not is_worker(config) or config.workerinput["workerid"] != "gw0":  # type: ignore[attr-defined]
        return
    if not getattr(config.option, "loadgroup", False):
        return
    grouped = [item for item in items if item.get_closest_marker("xdist_group") is not None]
    if grouped and all(plain_nodeid(item) == item.nodeid for item in grouped):
        warnings.warn(
            pytest.PytestWarning(
                "pytest-tbench: --dist loadgroup did not group the items by model (the installed "
                "pytest-xdist cannot mark groups on this pytest: pytest-xdist#1386); items spread as with "
                "--dist load, so a worker loads each model it gets an item of. Results are unaffected."
            ),
            stacklevel=1,
        )


def plain_nodeid(item: pytest.Item) -> str:
    """The item's node id as one process names it: without the ``@group`` suffix that xdist's loadgroup
    appends (results, the JSON and the gate's baseline are keyed by it)."""
    if not getattr(item.config.option, "loadgroup", False):
        return item.nodeid
    names = sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )
    return item.nodeid.removesuffix("@" + "_".join(names)) if names else item.nodeid


# The refusal's first words: how the controller recognises it among collection errors.
SHARED_CPU = "pytest-tbench: xdist workers would run CPU items at once"


def refuse_shared_cpu(config: pytest.Config, items: list[pytest.Item], cpu_items: int, allowed: bool) -> None:
    """In a worker of several, with CPU benchmark items and no --tbench-allow-shared-cpu: collect nothing, and
    say why as a collection error. The controller, which collects nothing itself, only learns what the
    session holds from the workers; an error raised in a worker is an INTERNALERROR in pytest-xdist 3.8, and
    a failed collection report is shown once and stops the session. ``SharedCpuRefusal`` turns its exit
    status into a usage error."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if not is_worker(config) or workers < 2 or cpu_items == 0 or allowed:
        return
    from _pytest.reports import CollectReport

    message = (
        f"{SHARED_CPU} on the same cores ({cpu_items} CPU items, {workers} workers), disturbing each other's "
        f"timings: pass --tbench-allow-shared-cpu to give each worker its own slice of the {os.cpu_count()} "
        "CPUs (recorded as worker_cpus), or run the CPU items without -n"
    )
    config.hook.pytest_collectreport(report=CollectReport("", "failed", message, []))
    items[:] = []


class SharedCpuRefusal:
    """The controller's hooks that make a worker's shared-CPU refusal exit as a usage error (4)."""

    def __init__(self) -> None:
        self.refused = False

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and str(report.longrepr).startswith(SHARED_CPU):
            self.refused = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.refused:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR


def placement(config: pytest.Config) -> dict[str, Any]:
    """What an item's extra_info records of where it ran under xdist: the worker, its visible GPUs (None:
    all the parent's) and its pinned cores (None: not pinned); {} in one process."""
    if not is_worker(config):
        return {}
    data = config.workerinput.get(PLAN_KEY) or {}  # type: ignore[attr-defined]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {
        XDIST_WORKER: config.workerinput["workerid"],  # type: ignore[attr-defined]
        VISIBLE_DEVICES: visible.split(",") if visible is not None else None,
        WORKER_CPUS: data.get("cpus"),
    }


_WORKER_MACHINE: dict[str, Any] = {}


def _worker_machine(config: pytest.Config) -> dict[str, Any]:
    """The worker's share and the GPUs it sees, for the controller's machine_info; read once per worker."""
    if not _WORKER_MACHINE:
        import torch

        from pytest_tbench.machine import nvml

        where = placement(config)
        _WORKER_MACHINE.update(
            {
                VISIBLE_DEVICES: where[VISIBLE_DEVICES],
                WORKER_CPUS: where[WORKER_CPUS],
                "torch_num_threads": torch.get_num_threads(),
                # The GPUs this worker sees (NVML lists every GPU of the machine; torch_index marks its own).
                "gpus": [gpu for gpu in nvml.gpus(cuda_uuids()) if gpu["torch_index"] is not None],
            }
        )
    return _WORKER_MACHINE


def attach_results(report: pytest.TestReport, item: pytest.Item, state: SessionState) -> None:
    """In a worker, on an item's teardown report: its results, as the controller will add them."""
    from pytest_benchmark.utils import safe_dumps

    nodeid = plain_nodeid(item)
    results = [r for r in state.results if r.nodeid == nodeid]
    not_measured = [e["outcome"] for e in state.not_measured if e["fullname"] == nodeid]
    entries = entries_of(item.config, nodeid)
    if not (results or not_measured or entries):
        return
    gate = state.gate
    payload = {
        "worker": item.config.workerinput["workerid"],  # type: ignore[attr-defined]
        "machine": _worker_machine(item.config),
        "nodeid": nodeid,
        "benchmarks": entries,
        "results": [{"case": r.case.as_params(), "extra_info": r.extra_info} for r in results],
        "not_measured": not_measured,
        "remeasured": gate.comparison.remeasured.get(nodeid) if gate is not None else None,
    }
    setattr(report, PAYLOAD, safe_dumps(payload))


def receive(config: pytest.Config, state: SessionState, payload: str) -> None:
    """In the controller: add a worker's item to the session as if measured here, and judge it again under
    --tbench-compare (the judgement is deterministic on the same rounds, so the verdicts are the worker's)."""
    data = json.loads(payload)
    state.workers[data["worker"]] = data["machine"]
    nodeid = data["nodeid"]
    for entry in data["benchmarks"]:
        add_received(config, entry)
        if state.gate is not None and (entry.get("stats") or {}).get("data"):
            verdicts = state.gate.verdicts(ItemRecord.from_bench(entry))
            state.gate.record_attempts(nodeid, verdicts, [])
            if data["remeasured"]:
                state.gate.comparison.remeasured[nodeid] = data["remeasured"]
    for result in data["results"]:
        state.results.append(ItemResult(nodeid, BenchCase.from_params(result["case"]), result["extra_info"]))
    for outcome in data["not_measured"]:
        state.not_measured_item(nodeid, outcome)
