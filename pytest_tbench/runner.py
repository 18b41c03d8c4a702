"""The ``tbench`` fixture's object: runs a scenario through pytest-benchmark and records what it measured."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from .cases import BenchCase
from .compare.gate import Gate, retryable
from .compare.judge import Verdict
from .config import TBenchConfig
from .devices import synchronize
from .launchers import Job, Outcome, WorkerDied, run_isolated
from .launchers.pooling import pool, split_rounds
from .launchers.worker import RoundRules
from .measurement import measure_item, throughput
from .memory_errors import OomRecord, OutOfMemory, catch_out_of_memory, skip_out_of_memory
from .models.loading import LoadedModel
from .models.registry import ResolvedSpec
from .pytest_benchmark_api import discard_stats, drop_unfinished, record_samples, round_rules
from .results import ItemResult
from .scenarios import Work, build_work


class TBench:
    """One item: its case, its model (loaded lazily: an isolated item never loads it here), and the ways to
    measure it."""

    def __init__(
        self,
        case: BenchCase,
        load: Callable[[], LoadedModel],
        resolved: ResolvedSpec,
        benchmark: Any,
        config: TBenchConfig,
        record: Callable[[ItemResult], None],
        nodeid: str,
        ooms: OomRecord | None = None,
        gate: Gate | None = None,
        not_measured: Callable[[str], None] | None = None,
    ) -> None:
        self.case = case
        self._load = load
        self._resolved = resolved
        self.benchmark = benchmark
        self.settings = config
        self.rounds = config.rounds_for(case.mode)
        self.warmup = config.warmup
        self._record = record
        self._nodeid = nodeid
        self._ooms = ooms if ooms is not None else OomRecord()
        self._gate = gate
        self._not_measured = not_measured if not_measured is not None else _ignore

    @property
    def loaded(self) -> LoadedModel:
        return self._load()

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def config(self) -> Any:
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

    def measure(
        self, call: Callable[[], object], *, samples: int | None = None, tokens: int | None = None
    ) -> dict[str, Any]:
        """Benchmark any call on this item's model: ``samples`` and ``tokens`` per call give throughput.
        It always runs in this process: a closure cannot move to an isolated worker."""
        if self.settings.isolated:
            warnings.warn(
                f"{self.case.id}: tbench.measure() runs in the pytest process (a closure cannot move to a "
                "worker), so --tbench-isolate / --tbench-processes do not apply to it; use tbench.forward(), "
                "generate() or train() for measurements in worker processes",
                pytest.PytestWarning,
                stacklevel=2,
            )
        return self._judged(
            lambda: self._run_here(Work(call, samples=samples or self.case.batch_size, tokens=tokens or 0))
        )

    def _scenario(self, mode: str) -> dict[str, Any]:
        if mode != self.case.mode:
            raise pytest.UsageError(
                f"tbench.{mode}() in a test marked for {self.case.mode!r}: "
                f"use @pytest.mark.tbench(mode={mode!r}) so the item gets the right model head"
            )
        if self.settings.isolated:
            return self._judged(self._run_isolated)
        return self._judged(lambda: self._run_here(build_work(self.loaded, self.case, self.settings)))

    def _judged(self, attempt: Callable[[], Measured]) -> dict[str, Any]:
        """Measure the item, record it and, with --tbench-compare, judge it against its baseline. A timing
        regression is measured again (--tbench-compare-retries) and fails only if every attempt regresses:
        a passing attempt replaces the earlier ones, whose rounds stay in extra_info."""
        gate = self._gate
        earlier: list[list[Verdict]] = []  # the regressions of each replaced attempt
        discarded: list[dict[str, Any]] = []
        try:
            while True:
                measured = attempt()
                info = measured.info
                info.update(throughput(measured.samples, measured.tokens, measured.median_s))
                verdicts = []
                if gate is not None and measured.timings:
                    verdicts = gate.judge(self.benchmark.fullname, measured.timings, info)
                regressed = retryable(verdicts)
                if not regressed or len(earlier) >= self.settings.compare_retries:
                    break
                earlier.append(regressed)
                discarded.append(_attempt_record(measured, regressed))
                discard_stats(self.benchmark)
            if discarded:
                info["gate_discarded_attempts"] = discarded
            self.benchmark.extra_info.update(info)
            self._record(ItemResult(self._nodeid, self.case, info))
        except BaseException as exc:
            # An attempt that did not finish (Ctrl-C in the middle of the rounds, an error, out of memory) is
            # no measurement: pytest-benchmark would save its rounds so far like any other item's, and a later
            # comparison would take them for one.
            drop_unfinished(self.benchmark)
            if isinstance(exc, (KeyboardInterrupt, pytest.exit.Exception)):
                # pytest makes no report of an interrupted item, so its plugin hook cannot record it.
                self._not_measured("interrupted")
            raise
        if gate is not None and measured.timings:
            gate.record_attempts(self.benchmark.fullname, verdicts, earlier)
            if any(v.failed for v in verdicts):
                pytest.fail(gate.failure_message(verdicts, earlier), pytrace=False)
        return info

    def _rounds_and_warmup(self) -> tuple[int, int]:
        """The rounds every launcher runs: under --benchmark-disable one, hooks included, so that a round's
        checks (generate's token count) still run, as pytest-benchmark's "ran once, no stats"."""
        return (1, 0) if self.benchmark.disabled else (self.rounds, self.warmup)

    def _run_here(self, work: Work) -> Measured:
        """Measure ``work`` here, in the pytest process, through pytest-benchmark's pedantic."""
        device = self.case.device
        rounds, warmup = self._rounds_and_warmup()

        def before_round() -> None:  # untimed: every round starts with the device idle
            synchronize(device)
            work.before_round()

        def timed() -> None:
            work.call()
            synchronize(device)  # a CUDA call returns before the GPU is done; the timer must wait for it

        def after_round() -> None:
            work.after_round()

        def one_round() -> None:
            before_round()
            timed()
            after_round()

        def run_rounds() -> None:
            if self.benchmark.disabled:
                # A disabled pedantic calls its target once, without teardown: the round is that target.
                self.benchmark.pedantic(one_round)
                return
            self.benchmark.pedantic(
                timed,
                setup=before_round,
                teardown=after_round,
                rounds=rounds,
                warmup_rounds=warmup,
                iterations=1,
            )

        result = catch_out_of_memory(
            lambda: measure_item(self.case, self.loaded, work, rounds, warmup, run_rounds)
        )
        if isinstance(result, OutOfMemory):  # outside the except block: the failed call's frames are gone
            self._out_of_memory(result.detail)
        info = result
        metadata = getattr(self.benchmark, "stats", None)
        timings = list(metadata.stats.data) if metadata is not None else []
        return Measured(info, work.samples, work.tokens, timings)

    def _run_isolated(self) -> Measured:
        """The item in fresh worker processes: one (--tbench-isolate), or its rounds spread over several
        (--tbench-processes), one after another so that they never compete for the machine."""
        start = time.perf_counter()
        try:
            rules = round_rules(self.benchmark)
        except ValueError as exc:
            pytest.fail(f"{self.case.id}: {exc}", pytrace=False)
        rounds, warmup = self._rounds_and_warmup()
        shares = split_rounds(rounds, self.settings.processes)
        outcomes = [self._run_worker(share, warmup, rules) for share in shares]
        samples, info = pool(self.case, outcomes)
        info["isolated"] = True
        info["worker_wall_time_s"] = time.perf_counter() - start
        record_samples(self.benchmark, samples)
        timings = [] if self.benchmark.disabled else samples
        return Measured(info, info["samples_per_call"], info["tokens_per_call"], timings)

    def _run_worker(self, rounds: int, warmup: int, rules: RoundRules) -> Outcome:
        resolved = self._resolved
        job = Job(
            case=self.case,
            spec=resolved.spec,
            kind=resolved.kind,
            config=resolved.make_config() if resolved.make_config is not None else None,
            target=resolved.target,
            settings=self.settings,
            rounds=rounds,
            warmup=warmup,
            rules=rules,
        )
        try:
            outcome = run_isolated(job)
        except WorkerDied as died:
            if not died.killed:
                pytest.fail(f"{self.case.id}: {died}; the rest of the session goes on", pytrace=False)
            outcome = Outcome("oom", message=f"{died} (SIGKILL: most likely the kernel's OOM killer)")
        if outcome.status == "oom":
            self._out_of_memory(outcome.message)
        if outcome.status == "error":
            pytest.fail(f"{self.case.id}: the isolated worker raised:\n{outcome.message}", pytrace=False)
        return outcome

    def _out_of_memory(self, detail: str) -> NoReturn:
        skip_out_of_memory(self.case, detail, self._ooms)


def _ignore(outcome: str) -> None:
    return None


@dataclass
class Measured:
    """One attempt at an item: its extra_info so far, what one call processes, and the kept timings (none
    under --benchmark-disable)."""

    info: dict[str, Any]
    samples: int
    tokens: int
    timings: list[float]

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.timings) if self.timings else None


def _attempt_record(measured: Measured, regressed: list[Verdict]) -> dict[str, Any]:
    """What extra_info keeps of an attempt that a new measurement replaced: enough to judge it again."""
    record: dict[str, Any] = {
        "median_s": measured.median_s,
        "rounds_s": measured.timings,
        "regressed": [f"{v.criterion.metric} {v.change:+.1%}" for v in regressed],
    }
    if "process_rounds" in measured.info:
        record["process_rounds"] = measured.info["process_rounds"]
    return record
