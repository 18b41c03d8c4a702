"""Are the numbers true: timings against torch.utils.benchmark, memory against known allocations, warm-up."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
import torch
from torch.utils.benchmark import Timer

from pytest_tbench.measure.trackers import memory
from pytest_tbench.measure.trackers.memory import CudaTracker, RssTracker, summarise
from pytest_tbench.models.loading import ModelKey, load_model
from pytest_tbench.models.registry import resolve
from pytest_tbench.plugin.fixture import TBench
from pytest_tbench.scenarios.forward import forward_work
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig

from .conftest import TINY, run_json

# Compares timings: runs alone, after the parallel part of the suite (README: the test command).
pytestmark = pytest.mark.timing

MIB = 1024 * 1024
ALLOC_MIB = 256


def test_forward_latency_agrees_with_torch_utils_benchmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench="def test_forward(tbench):\n    tbench.forward()\n")
    args = ["--tbench-models", "gpt2-mid", "--tbench-batch-sizes", "2", "--tbench-seq-lens", "128"]
    case = BenchCase("forward", "gpt2-mid", "base", 2, 128, "cpu", "float32")
    loaded = load_model(resolve("gpt2-mid"), ModelKey("gpt2-mid", "base", "cpu", "float32"))
    work = forward_work(loaded, case)
    seen = []
    # A second attempt only where the first disagrees: a burst of load on this shared VM during one side's
    # rounds moved tbench's median to 2.1x the reference once in CI (rounds 27-129 ms against 17.6 ms),
    # while a real difference in what is timed shows in both attempts.
    for _ in range(2):
        result, data = run_json(pytester, *args, "--tbench-rounds", "15", "--tbench-warmup", "3")
        result.assert_outcomes(passed=1)
        ours = data["benchmarks"][0]["stats"]["median"]
        reference = (
            Timer(stmt="call()", globals={"call": work.call}, num_threads=torch.get_num_threads())
            .blocked_autorange(min_run_time=1.0)
            .median
        )
        seen.append(f"tbench median {ours:.5f}s vs torch.utils.benchmark {reference:.5f}s")
        if 0.6 < ours / reference < 1.6:
            return
    pytest.fail("; ".join(seen))


def test_peak_memory_of_a_known_allocation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench=f"""
import torch

def test_alloc(tbench):
    # torch.ones writes every page, so all {ALLOC_MIB} MiB become resident.
    tbench.measure(lambda: torch.ones({ALLOC_MIB} * 1024 * 1024 // 4).sum())
"""
    )
    result, data = run_json(pytester, *TINY)
    result.assert_outcomes(passed=1)
    info = data["benchmarks"][0]["extra_info"]
    assert info["peak_rss_method"] == "vmhwm"
    assert info["peak_memory_increase_bytes"] == pytest.approx(ALLOC_MIB * MIB, rel=0.05)
    assert info["peak_memory_bytes"] >= info["rss_at_start_bytes"] + 0.95 * ALLOC_MIB * MIB


def test_peak_memory_is_the_items_own_not_the_sessions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
import pytest, torch

@pytest.mark.parametrize("mib", [512, 64])
def test_alloc(tbench, mib):
    tbench.measure(lambda: torch.ones(mib * 1024 * 1024 // 4).sum())
"""
    )
    result, data = run_json(pytester, *TINY)
    result.assert_outcomes(passed=2)
    by_mib = {b["params"]["mib"]: b["extra_info"] for b in data["benchmarks"]}
    assert by_mib[64]["peak_memory_increase_bytes"] == pytest.approx(64 * MIB, rel=0.1)
    # The big item ran first; its high-water mark must not leak into the small one.
    assert by_mib[64]["peak_memory_bytes"] < by_mib[512]["peak_memory_bytes"] - 300 * MIB


@pytest.mark.parametrize("method", ["sampling", "sampling_thread"])
def test_sampling_fallbacks_see_a_held_allocation(method: str) -> None:
    import threading

    import psutil

    tracker = RssTracker(force_sampling=True, interval_s=0.001)
    assert tracker.method == "sampling"  # Linux: a sampler process
    tracker.method = method
    tracker.start()
    samplers = [t for t in threading.enumerate() if t.name == "tbench-rss-sampler"]
    sampler = tracker._sampler
    # The sampler process takes no GIL from the timed calls: no thread of this process samples.
    assert len(samplers) == (0 if method == "sampling" else 1)
    assert (sampler is not None) == (method == "sampling")
    if sampler is not None:
        assert sampler.pid in [child.pid for child in psutil.Process().children()]
    block = torch.ones(ALLOC_MIB * MIB // 4)
    time.sleep(0.1)
    del block
    info = tracker.stop()
    assert info["peak_rss_method"] == method
    assert info["peak_rss_increase_bytes"] == pytest.approx(ALLOC_MIB * MIB, rel=0.05)
    assert sampler is None or sampler.poll() is not None  # the sampler ended with the item


def test_warmup_rounds_are_not_counted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
import contextlib
import time

def test_slow_start(tbench):
    calls = []
    def call():
        calls.append(1)
        time.sleep(0.3 if len(calls) <= 3 else 0.005)
    tbench.measure(call)
    assert len(calls) == 3 + 4
"""
    )
    result, data = run_json(pytester, *TINY, "--tbench-rounds", "4", "--tbench-warmup", "3")
    result.assert_outcomes(passed=1)
    stats = data["benchmarks"][0]["stats"]
    assert len(stats["data"]) == 4
    assert stats["max"] < 0.2


class _FakeBenchmark:
    """pytest-benchmark's fixture, reduced to what TBench.run uses."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.stats = None
        self.disabled = False

    def pedantic(
        self, target: Any, setup: Any, teardown: Any, rounds: int, warmup_rounds: int, iterations: int
    ) -> None:
        for _ in range(warmup_rounds + rounds):
            setup()
            target()
            teardown()


def test_cuda_timed_calls_are_synchronised_inside_the_timed_region(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(
        "pytest_tbench.measure.rounds.synchronize", lambda device: events.append(f"sync:{device}")
    )
    monkeypatch.setattr("pytest_tbench.measure.item.memory_tracker", _no_memory)
    monkeypatch.setattr("pytest_tbench.measure.item.on_device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr("pytest_tbench.measure.item.device_name", lambda device: "Fake GPU")
    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cuda:0", "float16")
    settings = TBenchConfig.of(rounds=2, warmup=1)
    loaded = _fake_loaded()
    tbench = TBench(
        case,
        lambda: loaded,
        resolve("tiny-gpt2"),
        _FakeBenchmark(),
        settings,
        record=lambda r: None,
        nodeid="x",
    )
    tbench.measure(lambda: events.append("call"))
    # setup (untimed) syncs before each round, the timed target syncs after its call: 3 rounds in all.
    assert events == ["sync:cuda:0", "call", "sync:cuda:0"] * 3


def test_cuda_tracker_arithmetic_with_a_fake_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {"allocated": 100 * MIB, "max_allocated": 900 * MIB, "max_reserved": 1024 * MIB, "reset": 0}
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: fake.__setitem__("reset", 1))
    monkeypatch.setattr(cuda, "memory_allocated", lambda device=None: fake["allocated"])
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: fake["max_allocated"])
    monkeypatch.setattr(cuda, "max_memory_reserved", lambda device=None: fake["max_reserved"])
    monkeypatch.setattr(cuda, "memory_reserved", lambda device=None: 200 * MIB)
    monkeypatch.setattr(memory, "synchronize", lambda device: None)
    monkeypatch.setattr(memory, "empty_cache", lambda device: None)
    monkeypatch.setattr(memory, "on_device", lambda device: contextlib.nullcontext())
    # NVML's readings at the item's start, then at its end (this process grew by 500 MiB).
    readings = [memory.nvml.MemoryInUse(1800 * MIB, 1000 * MIB, None)]
    readings.append(memory.nvml.MemoryInUse(2048 * MIB, 1500 * MIB, None))
    monkeypatch.setattr(memory.nvml, "memory_in_use", lambda uuid: readings.pop(0))
    monkeypatch.setattr(memory, "cuda_uuid", lambda index: "aaaa-1111")
    tracker = CudaTracker("cuda:0")
    tracker.start()
    info = tracker.stop()
    assert fake["reset"] == 1
    assert info == {
        "cuda_device_uuid": "aaaa-1111",
        "cuda_max_allocated_bytes": 900 * MIB,
        "cuda_max_reserved_bytes": 1024 * MIB,
        "cuda_allocated_at_start_bytes": 100 * MIB,
        "cuda_reserved_at_start_bytes": 200 * MIB,
        "nvml_device_used_bytes": 2048 * MIB,
        "nvml_process_used_at_start_bytes": 1000 * MIB,
        "nvml_process_used_at_end_bytes": 1500 * MIB,
        "nvml_unavailable_reason": None,
    }
    assert summarise("cuda:0", info) == {
        "peak_memory_bytes": 900 * MIB,
        "peak_memory_increase_bytes": 800 * MIB,
        "peak_memory_kind": "cuda_max_allocated",
    }
    # ONNX Runtime's arena is outside PyTorch's allocator (which saw 900 MiB of the export's tensors, say):
    # its item's peak is this process's NVML figure, its own memory what the process grew by.
    assert summarise("cuda:0", info, pytorch_allocator=False) == {
        "peak_memory_bytes": 1500 * MIB,
        "peak_memory_increase_bytes": 500 * MIB,
        "peak_memory_kind": "nvml_process_used",
    }
    hidden = {**info, "nvml_process_used_at_end_bytes": None, "nvml_unavailable_reason": "pid 7 not listed"}
    unknown = summarise("cuda:0", hidden, pytorch_allocator=False)
    assert unknown["peak_memory_bytes"] is None and unknown["peak_memory_increase_bytes"] is None
    assert "outside PyTorch's allocator" in unknown["peak_memory_unavailable_reason"]
    assert "pid 7 not listed" in unknown["peak_memory_unavailable_reason"]


def _fake_loaded() -> Any:
    return load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "base", "cpu", "float32"))


class _no_memory:
    def __init__(self, device: str, devices: Any = None, pytorch_allocator: bool = True) -> None:
        self.info: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        return self.info

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_works_preparation_runs_before_its_memory_is_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiled item compiles in prepare: inductor's autotuning and scratch are not the item's peak.
    from pytest_tbench.measure.item import run_item
    from pytest_tbench.measure.work import Work

    events: list[str] = []

    class Tracker(_no_memory):
        def __enter__(self) -> dict[str, Any]:
            events.append("tracking")
            return self.info

        def __exit__(self, *exc: object) -> None:
            events.append("tracked")

    monkeypatch.setattr("pytest_tbench.measure.item.memory_tracker", Tracker)
    work = Work(lambda: events.append("call"), samples=1, tokens=8, prepare=lambda: events.append("prepare"))
    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cpu", "float32")
    run_item(case, _fake_loaded(), work, 1, 0, lambda metered: metered.call())
    assert events == ["prepare", "tracking", "call", "tracked"]
