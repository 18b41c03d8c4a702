"""A mode added from a user's conftest.py with one ``register_mode`` call: it becomes pytest items, gets its
own terminal table, lands in the JSON under its name, and shows wherever modes are listed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_tbench import Mode, Scenario, Work, register_mode
from pytest_tbench.core.metric_table import LATENCY, TOKENS_PER_S
from pytest_tbench.core.modes import MODES, metric_column
from pytest_tbench.scenarios import SCENARIOS
from pytest_tbench.show.report import run_of
from pytest_tbench.show.report.tables import ordered_modes

from .conftest import TINY, run_json
from .forked import runpytest_forked

# The user's whole mode: the model's input-embedding lookup on the case's token ids, throughput in tokens.
EMBED_CONFTEST = """
import torch

from pytest_tbench import Mode, Scenario, Work, register_mode
from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.core.metric_table import LATENCY, PEAK_MEMORY, TOKENS_PER_S
from pytest_tbench.core.modes import Column, metric_column


def embed_work(loaded, case, settings):
    ids = make_inputs(loaded.config, case.batch_size, case.seq_len, case.device)["input_ids"]
    lookup = loaded.model.get_input_embeddings()

    def call():
        with torch.inference_mode():
            lookup(ids)

    return Work(call, samples=case.batch_size, tokens=case.batch_size * case.seq_len)


register_mode(
    Mode(
        "embed",
        "base",
        TOKENS_PER_S,
        (
            Column("batch", "batch_size"),
            Column("input (tokens)", "seq_len"),
            metric_column(LATENCY, "median (ms)"),
            metric_column(TOKENS_PER_S, "embedded tokens/s"),
            metric_column(PEAK_MEMORY, "peak mem (MiB)"),
        ),
    ),
    Scenario("embed", lambda case: case.seq_len, embed_work),
)
"""

EMBED_BENCH = """
import pytest


@pytest.mark.tbench(mode="embed")
def test_embed(tbench):
    tbench.run()
"""


@pytest.fixture
def embed_project(pytester: pytest.Pytester, restored_modes: Callable[[], None]) -> pytest.Pytester:
    pytester.makeconftest(EMBED_CONFTEST)
    pytester.makepyfile(test_bench=EMBED_BENCH)
    return pytester


def test_a_mode_registered_in_conftest_runs_reports_and_saves(embed_project: pytest.Pytester) -> None:
    result, data = run_json(embed_project, *TINY)
    result.assert_outcomes(passed=1)
    # Its own table in the terminal summary, with its columns and the item's row.
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "tbench EMBED - SPEED AND MEMORY" in line)
    header, row = lines[start + 1], lines[start + 3]
    assert header.split()[:4] == ["model", "batch", "input", "(tokens)"] and "embedded tokens/s" in header
    assert row.split()[:3] == ["tiny-gpt2", "1", "8"]

    (bench,) = data["benchmarks"]
    assert bench["fullname"] == "test_bench.py::test_embed[tiny-gpt2-b1-s8-cpu-float32]"
    assert bench["params"]["tbench_case"]["mode"] == "embed"
    assert bench["params"]["tbench_case"]["head"] == "base"  # the mode's default head
    info = bench["extra_info"]
    assert info["mode"] == "embed" and info["tokens_per_call"] == 8
    assert info["throughput_tokens_per_s"] > 0 and info["model_class"] == "GPT2Model"


def test_a_registered_mode_is_listed_and_validated(
    embed_project: pytest.Pytester, restored_modes: Callable[[], None]
) -> None:
    listed = embed_project.runpytest("--tbench-list-presets", "-p", "no:cacheprovider")
    assert listed.ret == 0
    header = listed.stdout.lines[0]
    assert header.index("train rounds") < header.index("embed rounds")
    assert "runs x 10 (forward, train, embed)" in listed.stdout.str()
    restored_modes()
    markers = embed_project.runpytest("--markers", "-p", "no:cacheprovider")
    assert "forward, generate, train, embed" in markers.stdout.str()
    restored_modes()

    embed_project.makepyfile(
        test_bench='import pytest\n\n@pytest.mark.tbench(mode="embedd")\ndef test_x(tbench):\n    pass\n'
    )
    wrong = embed_project.runpytest("-p", "no:cacheprovider")
    assert wrong.ret != 0
    wrong.stdout.fnmatch_lines(["*UsageError*mode='embedd'*valid modes forward, generate, train, embed *"])


def test_registering_a_taken_name_fails_in_the_conftest(
    pytester: pytest.Pytester, restored_modes: object
) -> None:
    pytester.makeconftest(
        "from pytest_tbench import register_mode\n"
        "from pytest_tbench.core.modes import MODES\n"
        "from pytest_tbench.scenarios import SCENARIOS\n"
        "register_mode(MODES['train'], SCENARIOS['train'])\n"
    )
    pytester.makepyfile(test_bench=EMBED_BENCH)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    assert "a mode named 'train' already exists" in result.stdout.str() + result.stderr.str()


def _mode(name: str, head: str = "base") -> Mode:
    return Mode(name, head, TOKENS_PER_S, (metric_column(LATENCY),))


def _scenario(name: str) -> Scenario:
    return Scenario(name, lambda case: case.seq_len, lambda loaded, case, settings: Work(_nothing, 1, 1))


def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("mode", "scenario", "message"),
    [
        (_mode("forward"), _scenario("forward"), "a mode named 'forward' already exists"),
        (_mode("embed"), _scenario("embedding"), "named 'embed' but its scenario 'embedding'"),
        (_mode("embed", head="lm-head"), _scenario("embed"), "default head 'lm-head'"),
    ],
)
def test_register_mode_refuses_and_leaves_the_tables_alone(
    mode: Mode, scenario: Scenario, message: str, restored_modes: object
) -> None:
    before = (dict(MODES), dict(SCENARIOS))
    with pytest.raises(ValueError, match=message):
        register_mode(mode, scenario)
    assert (dict(MODES), dict(SCENARIOS)) == before


def test_a_registered_mode_is_ordered_with_the_known_modes(restored_modes: object) -> None:
    register_mode(_mode("embed"), _scenario("embed"))
    assert SCENARIOS["embed"].default_head == "base"
    benches = [
        {"fullname": f"t::{mode}", "params": {"tbench_case": {"mode": mode}}, "extra_info": {}}
        for mode in ("legacy", "embed", "forward")
    ]
    assert ordered_modes(run_of({"benchmarks": benches}, "run").rows) == ["forward", "embed", "legacy"]


def test_a_registered_mode_runs_in_worker_processes(pytester: pytest.Pytester) -> None:
    # A subprocess run: its workers import this run's conftest (which registers the mode) as it does.
    pytester.makeconftest(EMBED_CONFTEST)
    pytester.makepyfile(test_bench=EMBED_BENCH)
    result = runpytest_forked(pytester, *TINY, "--tbench-processes", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*tbench EMBED - SPEED AND MEMORY*"])
