"""What a launcher makes of an item's outcome, timings aside: a generate call that stops early fails the item
even under --benchmark-disable, and an item that did not finish its rounds never lands as a measurement. Kept
out of the timing part of the suite (test_launchers.py), which runs alone: nothing here compares timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import TINY
from .forked import runpytest_forked

# Asks generate for one token fewer than the item's count, as a model stopping early would: the per-round
# check must catch it. Imported by the conftest, in the pytest process and in the workers' (which import it).
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
    result = runpytest_forked(pytester, *TINY, "--tbench-new-tokens", "3", "--benchmark-disable", *isolation)
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
    result = runpytest_forked(pytester, *TINY, "--tbench-rounds", "5", save)
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
