"""The ``tbench`` fixture's object: what a bench test calls. It picks the item's launcher and job, has them
measured (again, under the regression gate) and records the result; how and where lives in ``launch/``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tbench.core.axes import BACKEND_PYTORCH, COMPILE_OFF
from pytest_tbench.core.errors import ItemFailed, ItemSkipped, RunStopped
from pytest_tbench.judge.gate import Gate
from pytest_tbench.launch.base import Attempt
from pytest_tbench.launch.choose import choose_launcher, in_workers, job_for, runs_in_workers
from pytest_tbench.launch.conftests import Conftest
from pytest_tbench.launch.retries import measure_judged, settle
from pytest_tbench.measure.limits import GivenPeaks
from pytest_tbench.measure.memory_errors import OomRecord, OutOfMemory, settle_out_of_memory
from pytest_tbench.measure.pytest_benchmark_api import drop_unfinished
from pytest_tbench.measure.rounds import planned_rounds
from pytest_tbench.models.code import MODEL_CODE, ModelCode, check_here
from pytest_tbench.models.fit import MemoryEstimate
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.models.registry import ResolvedSpec
from pytest_tbench.scenarios import Work
from pytest_tbench.scenarios.compiled import SteadyCompiled
from pytest_tbench.settings.benchlist import BENCHMARK_ENTRY
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.show.results import ItemResult

if TYPE_CHECKING:
    from pytest_tbench.launch.ab.session import ABSession


class TBench:
    """One item: its case, its model (loaded lazily: an isolated item never loads it here), and the ways to
    measure it. ``config`` is the model's config; the plugin's settings are ``tbench_settings``."""

    def __init__(
        self,
        case: BenchCase,
        load: Callable[[], LoadedModel],
        resolved: ResolvedSpec,
        benchmark: Any,
        settings: TBenchConfig,
        record: Callable[[ItemResult], None],
        nodeid: str,
        ooms: OomRecord | None = None,
        gate: Gate | None = None,
        not_measured: Callable[[str], None] | None = None,
        ab: ABSession | None = None,
        memory_estimate: MemoryEstimate | None = None,
        benchmark_entry: dict[str, Any] | None = None,
        placement: dict[str, Any] | None = None,
        conftests: tuple[Conftest, ...] = (),
    ) -> None:
        self.case = case
        self._load = load
        self._resolved = resolved
        self.benchmark = benchmark
        self.tbench_settings = settings
        self.rounds = settings.measure.rounds_for(case.mode)
        self.warmup = settings.measure.warmup
        self._record = record
        self._nodeid = nodeid
        self._ooms = ooms if ooms is not None else OomRecord()
        self._gate = gate
        self._not_measured = not_measured if not_measured is not None else _ignore
        self._ab = ab
        self._memory_estimate = memory_estimate
        self._benchmark_entry = benchmark_entry  # the benchmark list entry that made the item, or None
        self._placement = placement or {}  # under pytest-xdist: the worker, its GPUs and cores
        self._conftests = conftests  # the session's, which worker processes import

    @property
    def loaded(self) -> LoadedModel:
        return self._load()

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def config(self) -> Any:
        """The model's config (``tbench_settings`` holds the plugin's)."""
        return self.loaded.config

    def forward(self) -> dict[str, Any]:
        """Benchmark one forward pass of the case's batch."""
        return self._scenario("forward")

    def generate(self) -> dict[str, Any]:
        """Benchmark ``model.generate`` of exactly the case's new tokens per row: TTFT, decode, total."""
        return self._scenario("generate")

    def train(self) -> dict[str, Any]:
        """Benchmark one training step: forward with labels, backward, optimizer step, zero_grad."""
        return self._scenario("train")

    def run(self) -> dict[str, Any]:
        """Benchmark the item's own mode (the one its ``tbench`` mark names): a registered mode's scenario,
        or forward / generate / train."""
        return self._scenario(self.case.mode)

    def measure(
        self, call: Callable[[], object], *, samples: int | None = None, tokens: int | None = None
    ) -> dict[str, Any]:
        """Benchmark any call on this item's model: ``samples`` and ``tokens`` per call give throughput.
        It always runs in this process: a closure cannot move to an isolated worker."""
        if runs_in_workers(self.tbench_settings):
            warnings.warn(
                f"{self.case.id}: tbench.measure() runs in the pytest process (a closure cannot move to a "
                "worker), so --tbench-isolate / --tbench-processes do not apply to it; use tbench.forward(), "
                "generate() or train() for measurements in worker processes",
                pytest.PytestWarning,
                stacklevel=2,
            )
        if self.case.backend != BACKEND_PYTORCH:
            # The backend runs its export of the scenario's forward; a user's call is PyTorch code it cannot
            # run.
            pytest.skip(
                f"backend {self.case.backend} runs tbench.forward() only; tbench.measure() calls run on "
                "pytorch"
            )
        work = Work(call, samples=samples or self.case.batch_size, tokens=tokens or 0)
        if self.case.compile != COMPILE_OFF:
            # A compiled item's call (one that runs compiled_module(tbench.model, tbench.case.compile)) gets
            # its compiling kept out of the rounds like a scenario's; one that compiles nothing fails there.
            work = SteadyCompiled(work, self.case, self.loaded.devices)
        return self._measured(work)

    def _scenario(self, mode: str) -> dict[str, Any]:
        if mode != self.case.mode:
            raise pytest.UsageError(
                f"tbench.{mode}() in a test marked for {self.case.mode!r}: "
                f"use @pytest.mark.tbench(mode={mode!r}) so the item gets the right model head"
            )
        return self._measured(None)

    def _measured(self, work: Work | None) -> dict[str, Any]:
        """Measure the item (``work``: a user's call; None: the case's scenario), record it and, with
        --tbench-compare, judge it against its baseline."""
        settings = self.tbench_settings
        if self._ab is not None and work is not None:
            pytest.skip(
                "--tbench-ab measures tbench.forward(), generate() and train() only: a tbench.measure() "
                "call is a closure of this process, which the base side cannot run"
            )
        try:
            launcher = choose_launcher(settings, self.benchmark, self._load, work, self._ab, self.case.tp)
            rounds, warmup = planned_rounds(self.rounds, self.warmup, self.benchmark.disabled)
            job = job_for(
                self.case, self._resolved, settings, rounds, warmup, work, self._conftests, self._nodeid
            )
            in_worker = in_workers(settings, work, self.case.tp)
            judged = measure_judged(
                lambda: self._attempt(launcher.measure(job), in_worker),
                self.benchmark,
                self._gate,
                settings.gate.retries,
                GivenPeaks(settings.measure.peak_tflops, settings.measure.peak_bandwidth),
            )
            # Beside the measured peaks, so that the estimate can be checked.
            estimate = self._memory_estimate.record() if self._memory_estimate is not None else {}
            session = {**estimate, BENCHMARK_ENTRY: self._benchmark_entry, **self._placement}
            extra_info = judged.info.add(("session", session)).extra_info()  # the one conversion
            self.benchmark.extra_info.update(extra_info)
            self._record(ItemResult(self._nodeid, self.case, extra_info))
        except BaseException as exc:
            # An attempt that did not finish (Ctrl-C in the middle of the rounds, an error, out of memory) is
            # no measurement: pytest-benchmark would save its rounds so far like any other item's, and a later
            # comparison would take them for one.
            drop_unfinished(self.benchmark)
            if isinstance(exc, (KeyboardInterrupt, pytest.exit.Exception, RunStopped)):
                # pytest makes no report of an interrupted item, so its plugin hook cannot record it.
                self._not_measured("interrupted")
            # The layers below end an item with errors of their own: here they become pytest's outcomes.
            if isinstance(exc, ItemFailed):
                pytest.fail(str(exc), pytrace=False)
            if isinstance(exc, ItemSkipped):
                pytest.skip(str(exc))
            if isinstance(exc, RunStopped):
                pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
            raise
        settle(judged, self.benchmark, self._gate)
        return extra_info

    def _attempt(self, result: Attempt | OutOfMemory, in_worker: bool) -> Attempt:
        if isinstance(result, OutOfMemory):  # outside the except block: the failed call's frames are gone
            pytest.skip(settle_out_of_memory(self.case, result.detail, self._ooms))
        if in_worker and isinstance(result.info.get(MODEL_CODE), dict):
            _check_worker_code(self.case.id, ModelCode.from_json(result.info[MODEL_CODE]))
        return result


def _check_worker_code(item: str, worker: ModelCode) -> None:
    """Fail the item if its worker's model ran other functions than this process' classes hold: a change made
    in the pytest process that no worker import makes (in a fixture, the test's body, a conftest hook)."""
    differences = check_here(worker)
    if differences:
        lines = "\n".join(f"  {line}" for line in differences)
        pytest.fail(
            f"{item}: the worker measured other model code than this session has:\n{lines}\n"
            "Workers import the session's conftest.py files (and what they import) before the model is "
            "built; a change made anywhere else (a fixture, a hook, the test's body) runs in the pytest "
            "process only: make it at a conftest's module level (README: What runs in a worker).",
            pytrace=False,
        )


def _ignore(outcome: str) -> None:
    return None
