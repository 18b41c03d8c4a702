"""Variant axes (``core/axes.py``): how they expand into items and ids, read back from JSON written before
them, and the attention axis end to end (the compile axis: tests/test_compile.py)."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, GPT2Model

from pytest_tbench.core.axes import AXES, variant_label
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.models.attention import attention_choices, attention_unsupported_reason
from pytest_tbench.settings.cases import BenchCase, build_cases
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.show.report.frame import row_of

from .conftest import TINY, run_json


def _case(**variant: str) -> BenchCase:
    return BenchCase("forward", "gpt2", "base", 1, 32, "cpu", "float32", **variant)


def test_ids_carry_only_non_default_variants() -> None:
    assert _case().id == "gpt2-b1-s32-cpu-float32"  # as before the axes existed
    assert _case(attn_implementation="auto", compile="off").id == "gpt2-b1-s32-cpu-float32"
    assert _case(attn_implementation="sdpa").id == "gpt2-b1-s32-cpu-float32-attn:sdpa"
    assert _case(compile="reduce-overhead").id == "gpt2-b1-s32-cpu-float32-compile:reduce-overhead"
    both = _case(attn_implementation="eager", compile="default")
    assert both.id == "gpt2-b1-s32-cpu-float32-attn:eager-compile:default"
    assert variant_label(both.as_params()) == "attn:eager compile:default"


def test_the_sweep_keeps_each_loaded_model_together() -> None:
    config = TBenchConfig.of(
        models=("tiny-gpt2",),
        batch_sizes=(1, 2),
        seq_lens=(8,),
        devices=("cpu",),
        attn_implementation=("eager", "sdpa"),
        compile=("off", "default"),
    )
    cases = build_cases(config, "forward", "base")
    assert [c.id for c in cases] == [
        "tiny-gpt2-b1-s8-cpu-float32-attn:eager",
        "tiny-gpt2-b2-s8-cpu-float32-attn:eager",
        "tiny-gpt2-b1-s8-cpu-float32-attn:eager-compile:default",
        "tiny-gpt2-b2-s8-cpu-float32-attn:eager-compile:default",
        "tiny-gpt2-b1-s8-cpu-float32-attn:sdpa",
        "tiny-gpt2-b2-s8-cpu-float32-attn:sdpa",
        "tiny-gpt2-b1-s8-cpu-float32-attn:sdpa-compile:default",
        "tiny-gpt2-b2-s8-cpu-float32-attn:sdpa-compile:default",
    ]
    # attention changes the loaded model (its key), compile does not: one load per implementation.
    assert len({c.model_key for c in cases}) == 2
    assert {c.model_key.attn_implementation for c in cases} == {"eager", "sdpa"}


def test_records_written_before_the_axes_read_as_their_defaults() -> None:
    old_case = {
        "mode": "forward",
        "model": "gpt2",
        "head": "base",
        "batch_size": 1,
        "seq_len": 32,
        "device": "cpu",
        "dtype": "float32",
        "new_tokens": 0,
    }
    record = ItemRecord.from_extra_info({"tbench_case": old_case}, {"median_s": 0.01})
    assert record.case is not None
    assert {axis.key: getattr(record.case, axis.key) for axis in AXES} == {
        axis.key: axis.default for axis in AXES
    }
    # The report tells variants apart, and an old entry is the default variant.
    old = row_of(
        {"fullname": "t.py::test_forward[gpt2-b1-s32-cpu-float32]", "params": {"tbench_case": old_case}}, "r"
    )
    new = row_of(
        {
            "fullname": "t.py::test_forward[gpt2-b1-s32-cpu-float32-attn:sdpa]",
            "params": {"tbench_case": {**old_case, "attn_implementation": "sdpa"}},
        },
        "r",
    )
    assert (old.variant, new.variant) == ("", "attn:sdpa")
    assert old.item != new.item
    # A hand-made entry without params still has its coordinates parsed from a variant id.
    bare = row_of({"fullname": "t.py::test_forward[gpt2-b1-s32-cpu-float32-compile:reduce-overhead]"}, "r")
    assert (bare.model, bare.batch_size, bare.seq_len, bare.dtype) == ("gpt2", 1, 32, "float32")


def test_attention_choices_are_the_installed_registry() -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    choices = attention_choices()
    assert choices[:2] == ("auto", "eager")
    assert {"sdpa", "flash_attention_2", "flex_attention"} <= set(choices)
    assert set(choices[2:]) == {k for k in ALL_ATTENTION_FUNCTIONS.valid_keys() if "|" not in k}


def test_an_implementation_the_installation_lacks_is_transformers_reason() -> None:
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0)
    # On a CUDA device and in float16 only the installation is left to refuse it: no flash-attn package here.
    reason = attention_unsupported_reason(GPT2Model, config, "flash_attention_2", "cuda", "float16")
    assert reason is not None and "the package for FlashAttention2 doesn't seem to be installed" in reason
    assert config._attn_implementation != "flash_attention_2"  # the session's config is left as it was
    assert attention_unsupported_reason(GPT2Model, config, "eager", "cpu", "float32") is None
    on_cpu = attention_unsupported_reason(GPT2Model, config, "flash_attention_2", "cpu", "float16")
    assert on_cpu is not None and "not on cpu" in on_cpu
    in_float32 = attention_unsupported_reason(GPT2Model, config, "flash_attention_2", "cuda", "float32")
    assert in_float32 is not None and "float16 or bfloat16" in in_float32


def test_an_architecture_without_the_implementation_is_skipped_with_its_reason() -> None:
    class NoSdpa(GPT2Model):
        _supports_sdpa = False

    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0)
    reason = attention_unsupported_reason(NoSdpa, config, "sdpa", "cpu", "float32")
    assert reason is not None and "NoSdpa does not support" in reason


def test_attention_variants_run_record_what_ran_and_show_in_the_summary(
    forward_bench: pytest.Pytester,
) -> None:
    result, data = run_json(
        forward_bench, *TINY, "--tbench-attn-implementation", "eager,sdpa,flash_attention_2", "-rs"
    )
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*attn_implementation flash_attention_2 runs on cuda*not on cpu*"])
    ran = {b["fullname"]: b["extra_info"] for b in data["benchmarks"]}
    assert {name: (i["attn_implementation"], i["attn_implementation_used"]) for name, i in ran.items()} == {
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:eager]": ("eager", "eager"),
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:sdpa]": ("sdpa", "sdpa"),
    }
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "tbench FORWARD - SPEED AND MEMORY" in line)
    assert lines[start + 1].split()[:2] == ["model", "attn"]
    assert lines[start + 3].split()[:2] == ["tiny-gpt2", "eager"]


def test_the_default_passes_nothing_and_records_the_models_choice(forward_bench: pytest.Pytester) -> None:
    result, data = run_json(forward_bench, *TINY)
    result.assert_outcomes(passed=1)
    (bench,) = data["benchmarks"]
    assert bench["fullname"] == "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32]"
    info = bench["extra_info"]
    assert (info["attn_implementation"], info["attn_implementation_used"], info["compile"]) == (
        "auto",
        "sdpa",
        "off",
    )
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "tbench FORWARD - SPEED AND MEMORY" in line)
    assert "attn" not in lines[start + 1].split()  # no variant column where every row is the default


def test_a_skip_is_decided_before_an_isolated_worker_starts(forward_bench: pytest.Pytester) -> None:
    result = forward_bench.runpytest(
        *TINY, "--tbench-isolate", "--tbench-attn-implementation", "flash_attention_2", "-rs"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*attn_implementation flash_attention_2 runs on cuda*"])


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--tbench-attn-implementation", "eager,flash"],
            [
                "*--tbench-attn-implementation: unknown attention implementation 'flash';"
                " valid: auto, eager, *sdpa*"
            ],
        ),
        (
            ["--tbench-compile", "fast"],
            [
                "*--tbench-compile: unknown compile mode 'fast';"
                " valid: off, default, reduce-overhead, max-autotune*"
            ],
        ),
    ],
)
def test_unknown_variant_values_are_usage_errors(
    forward_bench: pytest.Pytester, args: list[str], fragments: list[str]
) -> None:
    result = forward_bench.runpytest(*TINY, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(fragments)


def test_ini_and_config_file_keys_sweep_the_axes(forward_bench: pytest.Pytester) -> None:
    forward_bench.makeini("[pytest]\ntbench_attn_implementation = eager\n")
    forward_bench.makefile(".yaml", tbench="compile: [off, max-autotune]\nattn_implementation: [sdpa]\n")
    from_ini = forward_bench.runpytest(*TINY, "--collect-only", "-q")
    assert [line for line in from_ini.outlines if "::" in line] == [
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:eager]"
    ]
    from_file = forward_bench.runpytest(*TINY, "--tbench-config", "tbench.yaml", "--collect-only", "-q")
    assert [line for line in from_file.outlines if "::" in line] == [
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:sdpa]",
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:sdpa-compile:max-autotune]",
    ]
    # The ids select with -k: ":" is part of a -k word.
    picked = forward_bench.runpytest(
        *TINY, "--tbench-config", "tbench.yaml", "--collect-only", "-q", "-k", "compile:max-autotune"
    )
    assert [line for line in picked.outlines if "::" in line] == [
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32-attn:sdpa-compile:max-autotune]",
    ]
