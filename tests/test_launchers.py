"""Every launcher follows pytest-benchmark's rules (its timer, --benchmark-disable-gc, --benchmark-disable),
and an item that did not finish its rounds never lands as a measurement."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import pytest

from pytest_tbench.launchers.base import RoundRules
from pytest_tbench.launchers.rounds import load_timer, run_rounds, timer_name
from pytest_tbench.scenarios import Work

from .conftest import TINY

# Compares timings: runs alone, after the parallel part of the suite (README: the test command).
pytestmark = pytest.mark.timing

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
    result = pytester.runpytest_subprocess(
        *args, *isolation, *(["--benchmark-disable-gc"] if disable_gc else []), f"--benchmark-json={out}"
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


# Asks generate for one token fewer than the item's count, as a model stopping early would: the per-round
# check must catch it. Imported by the conftest (in-process items) and preloaded by the forkserver (workers).
SHORT_GENERATE = """
import copy

from transformers import GenerationMixin

_real = GenerationMixin.generate

def short(self, *args, generation_config, **kwargs):
    generation_config = copy.deepcopy(generation_config)
    generation_config.max_new_tokens = generation_config.min_new_tokens = generation_config.max_new_tokens - 1
    return _real(self, *args, generation_config=generation_config, **kwargs)

GenerationMixin.generate = short
"""

SHORT_CONFTEST = """
import short_generate  # noqa: F401
from pytest_tbench.launchers.forkserver import preload

preload(["short_generate"])
"""

GENERATE_BENCH = """
import pytest

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""


@pytest.mark.parametrize("isolation", [[], ["--tbench-isolate"]], ids=["in-process", "isolated"])
def test_benchmark_disable_still_checks_the_token_count(
    pytester: pytest.Pytester, isolation: list[str]
) -> None:
    pytester.makepyfile(test_bench=GENERATE_BENCH, short_generate=SHORT_GENERATE)
    pytester.makeconftest(SHORT_CONFTEST)
    result = pytester.runpytest_subprocess(
        *TINY, "--tbench-new-tokens", "3", "--benchmark-disable", *isolation
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*asked for 3 new tokens per row*tokens/s would be wrong*"])


@pytest.mark.parametrize("isolation", [[], ["--tbench-isolate"]], ids=["in-process", "isolated"])
def test_benchmark_disable_counts_as_using_the_fixture(
    pytester: pytest.Pytester, isolation: list[str]
) -> None:
    pytester.makepyfile(test_bench=GENERATE_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-new-tokens", "3", "--benchmark-disable", *isolation)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*not used at all*")


INTERRUPTED_BENCH = """
import pytest

def test_first(tbench):
    tbench.measure(lambda: None)

def test_interrupted(tbench):
    calls = []
    def call():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the rounds
    tbench.measure(call)

def test_never_reached(tbench):
    tbench.measure(lambda: None)
"""


@pytest.mark.parametrize("save", ["--benchmark-json=out.json", "--benchmark-autosave"])
def test_an_interrupted_item_is_not_saved_as_measured(pytester: pytest.Pytester, save: str) -> None:
    pytester.makepyfile(test_bench=INTERRUPTED_BENCH)
    result = pytester.runpytest_subprocess(*TINY, "--tbench-rounds", "5", save)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    (path,) = (
        [pytester.path / "out.json"]
        if "json" in save
        else list(Path(pytester.path, ".benchmarks").rglob("*.json"))
    )
    data = json.loads(path.read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["test_first[tiny-gpt2-b1-s8-cpu-float32]"]
    assert data["benchmarks"][0]["stats"]["rounds"] == 5
    assert data["tbench"]["not_measured"] == [
        {"fullname": "test_bench.py::test_interrupted[tiny-gpt2-b1-s8-cpu-float32]", "outcome": "interrupted"}
    ]
