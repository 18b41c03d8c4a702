"""Settings: precedence of the five levels, presets, listings, config files, devices, and usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_tbench.models.registry import CustomModel
from pytest_tbench.plugin.state import STATE
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.presets import PRESETS

from .conftest import TINY, run_json
from .forked import runpytest_forked


def _pow2(low: int, high: int) -> tuple[int, ...]:
    return tuple(2**k for k in range(20) if low <= 2**k <= high)


# name: batch sizes, input lengths, new tokens, runs (written out here, not read from settings/presets.py).
PRESET_TABLE: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int]] = {
    "quick_test": ((1, 2), (32, 64), 20, 1),
    "small_scale": ((1, 2), (32, 64, 128), 30, 2),
    "medium_scale": ((1, 2, 4, 8, 16, 32), _pow2(32, 2048), 50, 3),
    "large_scale": (_pow2(1, 256), _pow2(64, 65536), 100, 5),
    "batch_size_study": (_pow2(1, 256), (256,), 50, 5),
    "input_length_study": ((1,), _pow2(16, 65536), 50, 5),
}
BUILTIN_NAMES = ("gpt2", "bert-base-uncased", "smollm-135m", "t5-small", "tiny-gpt2", "tiny-bert")
# TINY without its --tbench-rounds, for runs where the rounds come from elsewhere.
SWEEP = TINY[: TINY.index("--tbench-rounds")] + TINY[TINY.index("--tbench-rounds") + 2 :]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="expects a machine without CUDA")


def option(key: str) -> str:
    return "--tbench-" + key.replace("_", "-")


def resolved(pytester: pytest.Pytester, *args: str) -> TBenchConfig:
    return pytester.parseconfigure(*args).stash[STATE].config


def forward_rounds(cfg: TBenchConfig) -> int:
    return cfg.measure.rounds_for("forward")


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    """Run pytest, require a usage error, return its stderr."""
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines
    return result.stderr.str()


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """A YAML or TOML file (by suffix) of ``values``; JSON scalars and arrays are valid in both."""
    sep = ":" if path.suffix == ".yaml" else " ="
    path.write_text("".join(f"{key}{sep} {json.dumps(value)}\n" for key, value in values.items()))
    return path


def arrange(
    pytester: pytest.Pytester, cli: dict[str, Any], file: dict[str, Any], ini: dict[str, Any]
) -> list[str]:
    """Put settings at the command line, a --tbench-config YAML file and tox.ini; return the arguments."""
    args = [arg for key, value in cli.items() for arg in (option(key), str(value))]
    if file:
        write_config(pytester.path / "tb.yaml", file)
        args += ["--tbench-config", "tb.yaml"]
    if ini:
        pytester.makeini("[pytest]\n" + "".join(f"tbench_{k} = {v}\n" for k, v in ini.items()))
    return args


# -- precedence ---------------------------------------------------------------------------------------

# Per key, what each level writes and what it resolves to; "preset" is --tbench-preset medium_scale.
LEVELS: dict[str, dict[str, tuple[Any, Any]]] = {
    "batch_sizes": {"cli": ("3", (3,)), "file": ([5], (5,)), "ini": ("7", (7,))},
    "seq_lens": {"cli": ("9,10", (9, 10)), "file": ([11, 12], (11, 12)), "ini": ("13 14", (13, 14))},
    "rounds": {"cli": ("4", 4), "file": (6, 6), "ini": ("8", 8)},
}
MEDIUM = PRESET_TABLE["medium_scale"]
PRESET_LEVEL = {"batch_sizes": MEDIUM[0], "seq_lens": MEDIUM[1], "rounds": MEDIUM[3] * 10}
DEFAULT_LEVEL = {"batch_sizes": (1, 2), "seq_lens": (32, 64), "rounds": 10}


@pytest.mark.parametrize("key", list(LEVELS))
@pytest.mark.parametrize(
    ("high", "low"), [("cli", "file"), ("file", "ini"), ("ini", "preset"), ("preset", "default")]
)
def test_higher_level_wins(pytester: pytest.Pytester, key: str, high: str, low: str) -> None:
    present = {high, low}
    at = {level: {key: LEVELS[key][level][0]} if level in present else {} for level in ("cli", "file", "ini")}
    if "preset" in present:
        at["cli"]["preset"] = "medium_scale"
    cfg = resolved(pytester, *arrange(pytester, at["cli"], at["file"], at["ini"]))
    expected = {"preset": PRESET_LEVEL[key], "default": DEFAULT_LEVEL[key]}.get(high)
    actual = forward_rounds(cfg) if key == "rounds" else cfg.value(key)
    assert actual == (LEVELS[key][high][1] if expected is None else expected)


PRESET_AT = {
    "cli": "small_scale",
    "file": "medium_scale",
    "ini": "input_length_study",
    "default": "quick_test",
}


@pytest.mark.parametrize(("high", "low"), [("cli", "file"), ("file", "ini"), ("ini", "default")])
def test_preset_is_chosen_at_each_level(pytester: pytest.Pytester, high: str, low: str) -> None:
    at = {
        level: {"preset": PRESET_AT[level]} if level in (high, low) else {}
        for level in ("cli", "file", "ini")
    }
    cfg = resolved(pytester, *arrange(pytester, at["cli"], at["file"], at["ini"]))
    batch_sizes, seq_lens, _, runs = PRESET_TABLE[PRESET_AT[high]]
    assert (cfg.sweep.preset, cfg.sweep.batch_sizes, cfg.sweep.seq_lens, forward_rounds(cfg)) == (
        PRESET_AT[high],
        batch_sizes,
        seq_lens,
        runs * 10,
    )


def test_built_in_defaults(pytester: pytest.Pytester) -> None:
    cfg = resolved(pytester)
    assert cfg.sweep.preset == "quick_test"
    assert cfg.sweep.models == ("gpt2", "bert-base-uncased", "smollm-135m", "t5-small")
    assert (cfg.sweep.batch_sizes, cfg.sweep.seq_lens, forward_rounds(cfg), cfg.measure.warmup) == (
        (1, 2),
        (32, 64),
        10,
        2,
    )
    assert (cfg.sweep.devices, cfg.sweep.dtype, cfg.sweep.max_batch_input_product) == (
        ("auto",),
        ("auto",),
        131072,
    )
    assert cfg.sweep.custom_models == {}


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    # argparse %-formats help texts: a bare "5%" in one of them made `pytest --help` crash.
    result = runpytest_forked(pytester, "--help")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["*--tbench-compare-fail=EXPR*", "*default: time:5% tokens_per_s:5%*"])


@pytest.mark.parametrize(
    ("name", "section"),
    [("pytest.ini", "[pytest]"), ("tox.ini", "[pytest]"), ("pyproject.toml", "[tool.pytest.ini_options]")],
)
def test_ini_files(pytester: pytest.Pytester, name: str, section: str) -> None:
    quote = '"' if name.endswith(".toml") else ""
    values = {"preset": "small_scale", "batch_sizes": "3,5", "rounds": "4"}
    lines = [f"tbench_{key} = {quote}{value}{quote}" for key, value in values.items()]
    (pytester.path / name).write_text("\n".join([section, *lines, ""]))
    cfg = resolved(pytester)
    assert (cfg.sweep.preset, cfg.sweep.batch_sizes, cfg.sweep.seq_lens, forward_rounds(cfg)) == (
        "small_scale",
        (3, 5),
        (32, 64, 128),
        4,
    )


def test_native_toml_pytest_table_takes_strings(pytester: pytest.Pytester) -> None:
    # ini keys are strings in every pytest config format, spelled as on the command line; typed values
    # belong in a --tbench-config file.
    pytester.makepyprojecttoml('[tool.pytest]\ntbench_batch_sizes = "3,5"\ntbench_rounds = "4"\n')
    cfg = resolved(pytester)
    assert (cfg.sweep.batch_sizes, forward_rounds(cfg)) == ((3, 5), 4)


# -- config files -------------------------------------------------------------------------------------

FILE_VALUES: dict[str, Any] = {
    "preset": "small_scale",
    "models": ["tiny-gpt2", "tiny-bert"],
    "batch_sizes": [3, 5],
    "seq_lens": "8, 16",
    "devices": ["cpu"],
    "dtype": "float32",
    "rounds": 4,
    "warmup": 0,
    "max_batch_input_product": 1000,
}


@pytest.mark.parametrize("prefix", ["", "tbench_"])
@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_yaml_and_toml(pytester: pytest.Pytester, suffix: str, prefix: str) -> None:
    write_config(pytester.path / f"tb{suffix}", {prefix + k: v for k, v in FILE_VALUES.items()})
    cfg = resolved(pytester, "--tbench-config", f"tb{suffix}")
    assert (cfg.sweep.preset, cfg.sweep.models, cfg.sweep.batch_sizes, cfg.sweep.seq_lens) == (
        "small_scale",
        ("tiny-gpt2", "tiny-bert"),
        (3, 5),
        (8, 16),
    )
    assert (
        cfg.sweep.devices,
        cfg.sweep.dtype,
        forward_rounds(cfg),
        cfg.measure.warmup,
        cfg.sweep.max_batch_input_product,
    ) == (
        ("cpu",),
        ("float32",),
        4,
        0,
        1000,
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tb.yaml", "custom_models:\n  mine:\n    base: tiny-gpt2\n    overrides: {n_layer: 1}\n"),
        ("tb.toml", '[custom_models.mine]\nbase = "tiny-gpt2"\noverrides = { n_layer = 1 }\n'),
    ],
)
def test_config_file_custom_models(pytester: pytest.Pytester, name: str, text: str) -> None:
    (pytester.path / name).write_text(text)
    cfg = resolved(pytester, "--tbench-config", name)
    assert cfg.sweep.custom_models == {"mine": CustomModel("tiny-gpt2", {"n_layer": 1})}


def test_ini_config_path_is_relative_to_the_ini_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\ntbench_config = conf/tb.toml\n")
    (pytester.path / "conf").mkdir()
    write_config(pytester.path / "conf" / "tb.toml", {"rounds": 6})
    (pytester.path / "sub" / "conf").mkdir(parents=True)
    write_config(pytester.path / "sub" / "conf" / "tb.toml", {"rounds": 99})  # a decoy under the cwd
    monkeypatch.chdir(pytester.path / "sub")
    assert forward_rounds(resolved(pytester)) == 6


def test_ini_config_path_with_dash_c(pytester: pytest.Pytester) -> None:
    cfg_dir = pytester.mkdir("cfg")
    (cfg_dir / "pytest.ini").write_text("[pytest]\ntbench_config = tb.toml\n")
    write_config(cfg_dir / "tb.toml", {"rounds": 6})
    write_config(pytester.path / "tb.toml", {"rounds": 99})
    assert forward_rounds(resolved(pytester, "-c", "cfg/pytest.ini")) == 6


def test_command_line_config_path_is_relative_to_cwd_and_replaces_the_ini_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\ntbench_config = tb.yaml\ntbench_warmup = 5\n")
    write_config(pytester.path / "tb.yaml", {"rounds": 6, "warmup": 1})
    write_config(pytester.mkdir("sub") / "tb.yaml", {"rounds": 7})
    monkeypatch.chdir(pytester.path / "sub")
    cfg = resolved(pytester, "--tbench-config", "tb.yaml")
    # sub/tb.yaml is read, the ini's tb.yaml not at all (its warmup: 1 is lost); the ini's own key still is.
    assert (forward_rounds(cfg), cfg.measure.warmup) == (7, 5)


# -- presets and listings -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESET_TABLE))
def test_presets_table(pytester: pytest.Pytester, name: str) -> None:
    batch_sizes, seq_lens, new_tokens, runs = PRESET_TABLE[name]
    assert (PRESETS[name].new_tokens, PRESETS[name].runs) == (new_tokens, runs)
    cfg = resolved(pytester, "--tbench-preset", name)
    assert (cfg.sweep.preset, cfg.sweep.batch_sizes, cfg.sweep.seq_lens) == (name, batch_sizes, seq_lens)
    assert forward_rounds(cfg) == runs * 10


def test_presets_are_exactly_the_six() -> None:
    assert list(PRESETS) == list(PRESET_TABLE)


def test_list_presets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_would_fail():\n    assert False\n")
    result = pytester.runpytest("--tbench-list-presets", "-p", "no:cacheprovider")
    assert result.ret == 0
    rows = {line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in result.outlines if line.strip()}
    for name, (_, _, new_tokens, runs) in PRESET_TABLE.items():
        assert rows[name][3:6] == [str(new_tokens), str(runs), str(runs * 10)], rows[name]
    assert "test_would_fail" not in result.stdout.str()
    assert "failed" not in result.stdout.str()


def test_list_models(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_would_fail():\n    assert False\n")
    result = pytester.runpytest("--tbench-list-models", "-p", "no:cacheprovider")
    assert result.ret == 0
    rows = {line.split()[0]: line.split() for line in result.outlines if line.strip()}
    assert set(BUILTIN_NAMES) <= set(rows)
    assert "failed" not in result.stdout.str()
    # Parameters and weight memory per dtype, from the meta device: gpt2-small's 124.4M in 475 MiB (float32),
    # half that in 16 bits.
    assert rows["gpt2"][1:10] == [
        "builtin",
        "text",
        "gpt2",
        "124.4M",
        "474.7",
        "MiB",
        "237.4",
        "MiB",
        "193.2",
    ]


@pytest.mark.parametrize(
    ("args", "rounds"), [([], 10), (["--tbench-preset", "small_scale"], 20), (["--tbench-rounds", "3"], 3)]
)
def test_forward_item_measures_the_resolved_rounds(
    forward_bench: pytest.Pytester, args: list[str], rounds: int
) -> None:
    result, data = run_json(forward_bench, *SWEEP, *args)
    result.assert_outcomes(passed=1)
    [bench] = data["benchmarks"]
    assert (bench["stats"]["rounds"], len(bench["stats"]["data"])) == (rounds, rounds)


# -- usage errors -------------------------------------------------------------------------------------

VALID_PRESETS = "quick_test, small_scale, medium_scale, large_scale, batch_size_study, input_length_study"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--tbench-preset", "nope"], ["--tbench-preset", "'nope'", VALID_PRESETS]),
        (["--tbench-devices", "cpu,tpu"], ["--tbench-devices", "'tpu'", "auto, cpu, cuda, cuda:N"]),
        (["--tbench-dtype", "float8"], ["--tbench-dtype", "'float8'", "float32, float16, bfloat16, auto"]),
        (["--tbench-batch-sizes", "1,x"], ["--tbench-batch-sizes", "'x'", "not an integer"]),
        (["--tbench-batch-sizes", "0"], ["--tbench-batch-sizes", "'0'", "minimum of 1"]),
        (["--tbench-rounds", "2.5"], ["--tbench-rounds", "'2.5'", "not an integer"]),
        (["--tbench-warmup", "-1"], ["--tbench-warmup", "'-1'", "minimum of 0"]),
        (["--tbench_preset", "quick_test"], ["--tbench_preset", "use --tbench-preset"]),
        (["--tbench_batch_sizes=2"], ["--tbench_batch_sizes", "use --tbench-batch-sizes"]),
        (["--no_memory"], ["--no_memory", "speed and memory are always both measured"]),
        (["--fp16"], ["--fp16", "--tbench-dtype float16"]),
    ],
)
def test_bad_command_line(pytester: pytest.Pytester, args: list[str], fragments: list[str]) -> None:
    err = usage_error(pytester, *args)
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("ini", "fragments"),
    [
        ("tbench_dtype = float8", ["ini key tbench_dtype", "'float8'", "float32, float16, bfloat16, auto"]),
        ("tbench_preset = huge", ["ini key tbench_preset", "'huge'", VALID_PRESETS]),
        ("tbench_batch_sizes = 0", ["ini key tbench_batch_sizes", "'0'", "minimum of 1"]),
    ],
)
def test_bad_ini_value(pytester: pytest.Pytester, ini: str, fragments: list[str]) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    err = usage_error(pytester)
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("name", "values", "fragments"),
    [
        ("tb.yaml", {"rounds": "zero"}, ["config file tb.yaml key rounds", "'zero'", "not an integer"]),
        ("tb.toml", {"devices": ["tpu"]}, ["config file tb.toml key devices", "'tpu'", "cuda:N"]),
    ],
)
def test_bad_config_file_value(
    pytester: pytest.Pytester, name: str, values: dict[str, Any], fragments: list[str]
) -> None:
    write_config(pytester.path / name, values)
    err = usage_error(pytester, "--tbench-config", name)
    for fragment in fragments:
        assert fragment in err


VALID_KEYS = "valid keys: preset, models, batch_sizes"


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        ("tb.yaml", "rounds: 3\n\nwarmups: 1\n", ["tb.yaml line 3: unknown key 'warmups'", VALID_KEYS]),
        (
            "tb.yaml",
            "# a comment\nmodels:\n  - tiny-gpt2\nbatch_size: 1\n",
            ["tb.yaml line 4", "'batch_size'"],
        ),
        ("tb.toml", "# a comment\nrounds = 3\ntbench_warmups = 1\n", ["tb.toml line 3", "'tbench_warmups'"]),
        (
            "tb.toml",
            "rounds = 3\n\n\n[custom]\nx = 1\n",
            ["tb.toml line 4: unknown key 'custom'", VALID_KEYS],
        ),
        ("tb.yaml", "rounds: 3\nbatch_sizes: [1, 2\n", ["tb.yaml", "does not parse as YAML"]),
        ("tb.toml", "rounds = 3\nbatch_sizes = [1, 2\n", ["tb.toml", "does not parse as TOML"]),
        ("tb.toml", "rounds: 3\n", ["tb.toml", "does not parse as TOML"]),
        ("tb.json", '{"rounds": 3}\n', ["tb.json", "unknown suffix '.json'", ".yaml, .yml or .toml"]),
        ("tb.yaml", "- rounds\n", ["tb.yaml", "expected a mapping"]),
        ("tb.yaml", "custom_models:\n  mine:\n    overrides: {n_layer: 1}\n", ["tb.yaml", "mine", "'base'"]),
        ("tb.toml", "[custom_models.mine]\noverrides = { n_layer = 1 }\n", ["tb.toml", "mine", "'base'"]),
        (
            "tb.yaml",
            "custom_models:\n  mine:\n    base: gpt2\n    layers: 1\n",
            ["tb.yaml", "custom_models.mine", "['layers']", "valid: base, overrides"],
        ),
        ("tb.yaml", "custom_models: [gpt2]\n", ["tb.yaml", "custom_models must map names"]),
    ],
)
def test_config_file_errors(pytester: pytest.Pytester, name: str, text: str, fragments: list[str]) -> None:
    (pytester.path / name).write_text(text)
    err = usage_error(pytester, "--tbench-config", name)
    for fragment in fragments:
        assert fragment in err


def test_toml_unknown_key_line_after_multiline_array(pytester: pytest.Pytester) -> None:
    (pytester.path / "tb.toml").write_text('models = [\n  "tiny-gpt2",\n  "gpt2",\n]\ngpt2 = 1\n')
    assert "tb.toml line 5: unknown key 'gpt2'" in usage_error(pytester, "--tbench-config", "tb.toml")


@pytest.mark.parametrize("where", ["cli", "ini"])
def test_missing_config_file(pytester: pytest.Pytester, where: str) -> None:
    if where == "ini":
        pytester.makeini("[pytest]\ntbench_config = missing.yaml\n")
    err = usage_error(pytester, *(["--tbench-config", "missing.yaml"] if where == "cli" else []))
    assert str(pytester.path / "missing.yaml") in err
    assert "does not exist" in err


# -- devices and dtypes -------------------------------------------------------------------------------


def collected_ids(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", *TINY, *args)
    assert result.ret == 0, result.outlines
    return [m.group(1) for line in result.outlines if (m := re.search(r"::test_forward\[(.+)\]$", line))]


@NO_CUDA
@pytest.mark.parametrize(
    "args",
    [[], ["--tbench-devices", "auto"], ["--tbench-devices", "auto,cpu", "--tbench-dtype", "auto,float32"]],
)
def test_auto_device_and_dtype_are_cpu_float32(forward_bench: pytest.Pytester, args: list[str]) -> None:
    assert collected_ids(forward_bench, *args) == ["tiny-gpt2-b1-s8-cpu-float32"]


def test_explicit_dtypes_make_one_item_each(forward_bench: pytest.Pytester) -> None:
    ids = collected_ids(forward_bench, "--tbench-devices", "cpu", "--tbench-dtype", "float32,bfloat16")
    assert ids == ["tiny-gpt2-b1-s8-cpu-float32", "tiny-gpt2-b1-s8-cpu-bfloat16"]


@NO_CUDA
def test_absent_cuda_items_are_skipped(forward_bench: pytest.Pytester) -> None:
    result = forward_bench.runpytest(*TINY, "--tbench-devices", "cpu,cuda", "-v", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_forward?tiny-gpt2-b1-s8-cpu-float32? PASSED*",
            "*test_forward?tiny-gpt2-b1-s8-cuda-float16? SKIPPED*",
            "SKIPPED [[]1[]] *device cuda absent*",
        ]
    )
