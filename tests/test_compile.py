"""The compile axis (``--tbench-compile``, ``scenarios/compiled.py``): compile time is measured apart and
never inside the rounds, frame compiles are counted in every round, and an item whose measured rounds
compile, that never stops compiling, or that reaches dynamo's recompile limit fails instead of reporting
eager or compiling rounds as compiled ones.

One session compiles for real on CPU (tiny models, every mode); the failure paths run modes registered here
around a Linear compiled with dynamo's ``eager`` backend, which counts frames exactly like inductor but
compiles in milliseconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
from transformers import GPT2Config

from pytest_tbench.settings.generate import GenerateSettings

from .conftest import ALL_MODES_BENCH, TINY, run_json

# In the suite's parallel part: the one timing compared is a compile (seconds) against a tiny model's call
# (milliseconds), which another test's load lengthens alike.


@pytest.fixture(scope="module", autouse=True)
def compile_stack_loaded() -> None:
    """One small real compile in this process before any pytester run takes its snapshot of the modules.

    An in-process pytester run drops the modules it imported when it ends, but torch's compile stack registers
    itself in registries that outlive them (dynamo's backends, torch.compiler's cache artifacts): a later run
    that imported it again would fail on the duplicates. Loaded here, the modules stay for every run."""
    torch.compile(torch.nn.Linear(2, 2))(torch.ones(1, 2))
    torch._dynamo.reset()


def test_every_mode_compiles_outside_its_rounds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-new-tokens", "3", "--tbench-compile", "off,default")
    result.assert_outcomes(passed=6)
    benches = {b["fullname"].split("::")[1]: b for b in data["benchmarks"]}
    assert sorted(benches) == [
        "test_forward[tiny-gpt2-b1-s8-cpu-float32-compile:default]",
        "test_forward[tiny-gpt2-b1-s8-cpu-float32]",
        "test_generate[tiny-gpt2-b1-s8-n3-cpu-float32-compile:default]",
        "test_generate[tiny-gpt2-b1-s8-n3-cpu-float32]",
        "test_train[tiny-gpt2-b1-s8-cpu-float32-compile:default]",
        "test_train[tiny-gpt2-b1-s8-cpu-float32]",
    ]
    for name, bench in benches.items():
        info = bench["extra_info"]
        if "compile:default" not in name:
            assert info["compile"] == "off" and "compile_time_s" not in info
            continue
        assert info["compile"] == "default"
        assert info["compile_frames"] >= 1 and info["recompiles_measured"] == 0
        # At least the compiling call and the one that proved it steady.
        assert info["compile_warmup_rounds"] >= 2
        rounds = bench["stats"]["data"]
        assert len(rounds) == 2  # --tbench-rounds, none of them a compiling call
        # A compile takes seconds (over a second even from inductor's warm on-disk cache: dynamo traces
        # anew), a tiny model's call milliseconds (generate's: a few hundred): no round holds a compile.
        assert max(rounds) * 3 < info["compile_time_s"], (name, rounds, info["compile_time_s"])
        assert statistics.median(rounds) == pytest.approx(info["median_s"])
        # The compiled variant keeps the work's FLOP pass: the uncompiled item's count, to within 0.1% (seen:
        # 512 FLOPs of 2.39 M apart on the forward; the counter sees the compiled wrapper's eager fallback).
        eager = benches[name.replace("-compile:default", "")]["extra_info"]
        assert info["flops_method"] == "counted" and eager["flops_per_call"] > 0
        assert info["flops_per_call"] == pytest.approx(eager["flops_per_call"], rel=1e-3)
    generate = benches["test_generate[tiny-gpt2-b1-s8-n3-cpu-float32-compile:default]"]["extra_info"]
    # transformers' own compiled decode step ran, over the static cache it compiles for.
    assert generate["generate_compiled"] is True and generate["generate_recompiles_measured"] == 0
    assert generate["generation_config"]["cache_implementation"] == "static"
    assert generate["generation_config"]["compile_config"]["mode"] == "default"
    plain = benches["test_generate[tiny-gpt2-b1-s8-n3-cpu-float32]"]["extra_info"]
    assert plain["generate_compiled"] is False and "compile_config" not in plain["generation_config"]
    # Each item left dynamo as it found it.
    assert torch._dynamo.config.fail_on_recompile_limit_hit is False


def test_generate_compile_settings() -> None:
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0)
    settings = GenerateSettings(new_tokens=3, compile="max-autotune")
    values = settings.generation_values(config, None)
    assert values["cache_implementation"] == "static"
    assert (
        values["compile_config"]["mode"] == "max-autotune" and values["compile_config"]["fullgraph"] is False
    )
    generation = settings.generation_config(config, None)
    assert generation.compile_config is not None and generation.compile_config.mode == "max-autotune"
    assert generation.compile_config._compile_all_devices  # compiles on CPU too, by transformers' own path
    off = GenerateSettings(new_tokens=3)
    assert "compile_config" not in off.generation_values(config, None)
    assert off.generation_config(config, None).compile_config is None


# Modes whose call is a Linear compiled with dynamo's eager backend; each calls it with the input rows that
# ``rows`` gives for the n-th call (1-based), so that a shape changes exactly when a test needs it to.
MODES_CONFTEST = """
import torch
import torch._dynamo

from pytest_tbench import Mode, Scenario, Work, register_mode
from pytest_tbench.core.metric_table import LATENCY, TOKENS_PER_S
from pytest_tbench.core.modes import metric_column


def accept(case, settings):
    return None


def linear_mode(name, rows, before=lambda: None, after=lambda: None, compiles=True):
    def build(loaded, case, settings):
        layer = torch.nn.Linear(4, 4)
        run = torch.compile(layer, backend="eager") if case.compile != "off" else layer
        calls = []
        before()

        def call():
            calls.append(1)
            with torch.no_grad():
                run(torch.ones(rows(len(calls)), 4))

        return Work(call, samples=1, tokens=0, cleanup=after)

    register_mode(
        Mode(name, "base", TOKENS_PER_S, (metric_column(LATENCY),)),
        Scenario(name, lambda case: case.seq_len, build, **({"variant_reason": accept} if compiles else {})),
    )


def reset_then(rows):
    def reset_rows(n):
        torch._dynamo.reset()  # every call compiles anew: it never settles
        return rows

    return reset_rows


saved = {}


def static_limit_one():
    config = torch._dynamo.config
    saved.update(limit=config.recompile_limit, dynamic=config.automatic_dynamic_shapes)
    torch._dynamo.config.recompile_limit = 1
    torch._dynamo.config.automatic_dynamic_shapes = False  # each new shape is a recompile


def restore():
    torch._dynamo.config.recompile_limit = saved["limit"]
    torch._dynamo.config.automatic_dynamic_shapes = saved["dynamic"]


linear_mode("steady", lambda n: 2)
linear_mode("shape_changes_in_rounds", lambda n: 2 if n <= 2 else n)
linear_mode("never_settles", reset_then(2))
linear_mode("past_the_limit", lambda n: 2 if n <= 2 else n, before=static_limit_one, after=restore)
linear_mode("uncompiled_scenario", lambda n: 2, compiles=False)
"""


# tbench.measure() on a compiled item: a call that compiles gets the same accounting, one that does not fails.
MEASURE_BENCH = """

def test_measure_compiled(tbench):
    run = torch.compile(torch.nn.Linear(4, 4), backend="eager")
    x = torch.ones(2, 4)
    tbench.measure(lambda: run(x))


def test_measure_eager(tbench):
    layer = torch.nn.Linear(4, 4)
    x = torch.ones(2, 4)
    tbench.measure(lambda: layer(x))
"""


def _bench_file(modes: list[str]) -> str:
    return (
        "import pytest\nimport torch\n"
        + MEASURE_BENCH
        + "".join(
            f'\n@pytest.mark.tbench(mode="{mode}")\ndef test_{mode}(tbench):\n    tbench.run()\n'
            for mode in modes
        )
    )


def test_compiling_that_does_not_settle_before_the_rounds_fails_the_item(
    pytester: pytest.Pytester, restored_modes: Callable[[], None]
) -> None:
    pytester.makeconftest(MODES_CONFTEST)
    modes = ["steady", "shape_changes_in_rounds", "never_settles", "past_the_limit", "uncompiled_scenario"]
    pytester.makepyfile(test_bench=_bench_file(modes))
    result, data = run_json(pytester, *TINY, "--tbench-rounds", "3", "--tbench-compile", "default", "-rs")
    result.assert_outcomes(passed=2, failed=4, skipped=1)
    infos = {b["name"].split("[")[0]: b["extra_info"] for b in data["benchmarks"]}
    assert sorted(infos) == ["test_measure_compiled", "test_steady"]
    for info in infos.values():
        counts = (info["compile_warmup_rounds"], info["compile_frames"], info["recompiles_measured"])
        assert counts == (2, 1, 0)
        assert info["compile_time_s"] > 0
    # Each failing item's own error (the run's short summary would be cut at the terminal's width).
    failures = {
        report.nodeid.split("::")[1].split("[")[0]: str(report.longrepr)
        for report in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if report.failed
    }
    assert sorted(failures) == [
        "test_measure_eager",
        "test_never_settles",
        "test_past_the_limit",
        "test_shape_changes_in_rounds",
    ]
    assert "CompileNotSteady" in failures["test_measure_eager"]
    assert "the first call compiled nothing" in failures["test_measure_eager"]
    # A shape that changes in the first measured round: dynamo recompiles there, and the item fails.
    assert (
        "MeasuredCompileError: tiny-gpt2-b1-s8-cpu-float32-compile:default: dynamo compiled 1 frame(s) "
        "during the measured rounds (per round: [1, 0, 0])" in failures["test_shape_changes_in_rounds"]
    )
    assert "CompileNotSteady" in failures["test_never_settles"]
    assert "still compiling after 10 calls" in failures["test_never_settles"]
    # Past dynamo's limit the call would run eager, silently: here it fails the item instead.
    assert "CompileNotSteady" in failures["test_past_the_limit"]
    assert (
        "reached its recompile limit (torch._dynamo.config.recompile_limit = 1)"
        in failures["test_past_the_limit"]
    )
    result.stdout.fnmatch_lines(["*SKIPPED*mode 'uncompiled_scenario' does not run a compiled model*"])
    assert torch._dynamo.config.fail_on_recompile_limit_hit is False


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--tbench-use-cache", "false"],
            "*compile:default in generate compiles the decode step over a static*",
        ),
        (
            ["--tbench-cache-implementation", "dynamic"],
            "*needs a static KV cache*not --tbench-cache-implementation dynamic*",
        ),
    ],
)
def test_a_compiled_generate_without_a_static_cache_is_skipped(
    pytester: pytest.Pytester, args: list[str], reason: str
) -> None:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result = pytester.runpytest(*TINY, "-k", "generate", "--tbench-compile", "default", *args, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([reason])


def test_the_compiling_calls_are_timed_to_every_gpu_of_a_device_mapped_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compile_time_s ends when the last GPU of a device-mapped model is done, as a round does (it once waited
    for the item's device alone)."""
    from pytest_tbench.measure import rounds
    from pytest_tbench.scenarios import Work, compiled
    from pytest_tbench.settings.cases import BenchCase

    synchronised: list[str] = []
    monkeypatch.setattr(rounds, "synchronize", synchronised.append)  # the rounds' own synchronisation
    frames = iter([0, 1, 1, 1])  # dynamo's count around each call: the first compiles, the second not
    monkeypatch.setattr(compiled, "dynamo_frame_compiles", lambda: next(frames))
    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cuda", "float32", compile="default")
    work = compiled.SteadyCompiled(Work(lambda: None, samples=1, tokens=8), case, ("cuda:0", "cuda:1"))
    work.prepare()
    assert synchronised[:4] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    work.cleanup()
