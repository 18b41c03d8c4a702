"""The ``tbench`` fixture's object: runs a scenario through pytest-benchmark and records what it measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cases import BenchCase
from .config import TBenchConfig
from .devices import synchronize
from .models.loading import LoadedModel
from .results import ItemResult
from .scenarios import Work, forward_work, generate_work
from .trackers import memory_tracker


class TBench:
    """One item: its case, its (shared) model, and the ways to measure it."""

    def __init__(
        self,
        case: BenchCase,
        loaded: LoadedModel,
        benchmark: Any,
        config: TBenchConfig,
        record: Callable[[ItemResult], None],
        nodeid: str,
    ) -> None:
        self.case = case
        self.loaded = loaded
        self.benchmark = benchmark
        self.settings = config
        self.rounds = config.rounds_for(case.mode)
        self.warmup = config.warmup
        self._record = record
        self._nodeid = nodeid

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def config(self) -> Any:
        return self.loaded.config

    def forward(self) -> dict[str, Any]:
        """Benchmark one forward pass of the case's batch."""
        return self.run(forward_work(self.loaded, self.case))

    def generate(self) -> dict[str, Any]:
        """Benchmark ``model.generate`` of exactly the case's new tokens per row: TTFT, decode, total."""
        settings = self.settings.generate_settings(self.case.new_tokens)
        return self.run(generate_work(self.loaded, self.case, settings))

    def measure(
        self, call: Callable[[], object], *, samples: int | None = None, tokens: int | None = None
    ) -> dict[str, Any]:
        """Benchmark any call on this item's model: ``samples`` and ``tokens`` per call give throughput."""
        return self.run(Work(call, samples=samples or self.case.batch_size, tokens=tokens or 0))

    def run(self, work: Work) -> dict[str, Any]:
        device = self.case.device

        def before_round() -> None:  # untimed: every round starts with the device idle
            synchronize(device)
            work.before_round()

        def timed() -> None:
            work.call()
            synchronize(device)  # a CUDA call returns before the GPU is done; the timer must wait for it

        def after_round() -> None:
            work.after_round()

        with memory_tracker(device) as memory:
            self.benchmark.pedantic(
                timed,
                setup=before_round,
                teardown=after_round,
                rounds=self.rounds,
                warmup_rounds=self.warmup,
                iterations=1,
            )

        info = self._describe(work)
        info.update(memory)
        info.update(work.metrics(self.warmup))
        median_s = self._median_s()
        if median_s is not None and median_s > 0:
            info["median_s"] = median_s
            info["throughput_samples_per_s"] = work.samples / median_s
            if work.tokens:
                info["throughput_tokens_per_s"] = work.tokens / median_s
        self.benchmark.extra_info.update(info)
        self._record(ItemResult(self._nodeid, self.case, median_s, info))
        return info

    def _median_s(self) -> float | None:
        metadata = getattr(self.benchmark, "stats", None)
        return float(metadata.stats.median) if metadata is not None else None

    def _describe(self, work: Work) -> dict[str, Any]:
        case, loaded = self.case, self.loaded
        return {
            "mode": case.mode,
            "model": case.model,
            "model_class": type(loaded.model).__name__,
            "model_source": loaded.source,
            "model_load_time_s": loaded.load_time_s,
            "num_parameters": loaded.num_parameters,
            "parameter_bytes": loaded.parameter_bytes,
            "batch_size": case.batch_size,
            "seq_len": case.seq_len,
            "device": case.device,
            "dtype": case.dtype,
            "rounds": self.rounds,
            "warmup_rounds": self.warmup,
            "samples_per_call": work.samples,
            "tokens_per_call": work.tokens,
        }
