"""Every launcher follows pytest-benchmark's rules (its timer, --benchmark-disable-gc, --benchmark-disable);
what launchers make of an item's outcome is in test_launcher_outcomes.py (not part of the timing tests)."""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import pytest

from pytest_tbench.measure.rounds import RoundRules, load_timer, run_rounds, timer_name
from pytest_tbench.scenarios import Work

from .conftest import TINY
from .forked import runpytest_forked

# In the suite's parallel part: a fake clock and the gc state: nothing here reads a real clock.

# A clock that ticks 1 s per reading with the garbage collector on and 2 s with it off: a timed call (two
# readings) lasts exactly 1.0 or 2.0 s, whichever process took it, and says whether gc was off around it.
GC_CLOCK = """
import gc

_now = 0.0

def clock():
    global _now
    _now += 1.0 if gc.isenabled() else 2.0
    return _now
"""

FORWARD_BENCH = """
def test_forward(tbench):
    tbench.forward()
"""


@pytest.mark.parametrize("isolation", [[], ["--tbench-isolate"]], ids=["in-process", "isolated"])
@pytest.mark.parametrize("disable_gc", [False, True], ids=["gc", "no-gc"])
def test_every_launcher_times_with_the_benchmark_timer_and_gc_rule(
    pytester: pytest.Pytester, isolation: list[str], disable_gc: bool
) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH, gc_clock=GC_CLOCK)
    out = pytester.path / "out.json"
    args = [*TINY, "--tbench-rounds", "3", "--tbench-warmup", "1", "--benchmark-timer=gc_clock.clock"]
    # A subprocess, so that the worker's forkserver starts here and can import gc_clock from this directory.
    result = runpytest_forked(
        pytester,
        *args,
        *isolation,
        *(["--benchmark-disable-gc"] if disable_gc else []),
        f"--benchmark-json={out}",
    )
    result.assert_outcomes(passed=1)
    stats = json.loads(out.read_text())["benchmarks"][0]["stats"]
    assert stats["data"] == [2.0 if disable_gc else 1.0] * 3


def test_a_timer_that_cannot_be_named_fails_an_isolated_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(autouse=True)
def unnamed_timer(benchmark):
    benchmark._timer = lambda: 0.0  # what a marker's timer=<lambda> gives the fixture
"""
    )
    result = pytester.runpytest(*TINY, "--tbench-isolate")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot be imported by name in a worker process*time.perf_counter*"])


def test_worker_rounds_turn_gc_off_only_around_each_timed_call() -> None:
    seen: list[tuple[str, bool]] = []
    work = Work(
        lambda: seen.append(("call", gc.isenabled())),
        samples=1,
        tokens=0,
        before_round=lambda: seen.append(("before", gc.isenabled())),
        after_round=lambda: seen.append(("after", gc.isenabled())),
    )
    assert gc.isenabled()
    samples = run_rounds(work, "cpu", rounds=2, warmup=1, rules=RoundRules(disable_gc=True))
    assert len(samples) == 2
    assert seen == [("before", True), ("call", False), ("after", True)] * 3
    assert gc.isenabled()
    seen.clear()
    run_rounds(work, "cpu", rounds=1, warmup=0)
    assert seen == [("before", True), ("call", True), ("after", True)]


def test_timer_names_round_trip() -> None:
    assert timer_name(time.perf_counter) == "time.perf_counter"
    assert load_timer("time.process_time") is time.process_time
    with pytest.raises(ValueError, match="cannot be imported by name"):
        timer_name(lambda: 0.0)


def test_processes_that_fork_workers_answer_cuda_availability_from_nvml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conftest's module-level torch.cuda.is_available() in the forkserver or an A/B side would start the
    CUDA driver there and poison every forked worker: those processes get PYTORCH_NVML_BASED_CUDA_CHECK=1,
    unless the user set it, and this process' environment is as before afterwards."""
    from pytest_tbench.launch.ab.session import ABSession
    from pytest_tbench.launch.forkserver import fork_safe_environment
    from pytest_tbench.settings.ab import Side

    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    with fork_safe_environment():
        assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
    session = ABSession(Side(env={"X": "1"}), tmp_path)
    session._home = tmp_path
    assert session._launch(Side(env={"X": "1"})).env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "0")
    with fork_safe_environment():
        assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "0"
    assert session._launch(Side()).env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "0"
