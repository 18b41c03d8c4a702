"""Benchmark lists in the config file (tbench's ``benchmarks:``, the seeds' format) and trust_remote_code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoConfig, AutoModel, GPT2Config

from pytest_tbench.core.errors import OptionError
from pytest_tbench.launch.base import Job
from pytest_tbench.launch.worker import resolved_spec
from pytest_tbench.models.hub import pretrained_kwargs
from pytest_tbench.models.loading import ModelCache, ModelKey, ModelLoadError, load_model
from pytest_tbench.plugin.state import STATE
from pytest_tbench.settings.benchlist import list_cases, parse_benchmarks
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.seeds_format import translate
from pytest_tbench.show.report.frame import row_of

from .conftest import FORWARD_BENCH, run_json

SOURCE = "config file tb.yaml"
CPU = TBenchConfig.of(devices=("cpu",))  # the session's settings, as if --tbench-devices cpu
REPO = Path(__file__).resolve().parent.parent


def configured(pytester: pytest.Pytester, *args: str) -> TBenchConfig:
    return pytester.parseconfigure(*args).stash[STATE].config


def yaml_file(pytester: pytest.Pytester, values: dict[str, Any], name: str = "tb.yaml") -> str:
    """``values`` as a YAML file (JSON is YAML); returns its name."""
    (pytester.path / name).write_text(json.dumps(values))
    return name


# -- tbench's format ----------------------------------------------------------------------------------

TWO_ENTRIES: list[dict[str, Any]] = [
    {"model": "tiny-gpt2", "batch_sizes": 1, "seq_lens": 8, "rounds": 2},
    {
        "model": "tiny-bert",
        "name": "bert",
        "batch_sizes": [2, 4],
        "seq_lens": "16",
        "rounds": 3,
        "modes": "forward",
    },
]


def test_entries_expand_into_their_own_items_with_their_own_settings() -> None:
    entries = parse_benchmarks(TWO_ENTRIES, CPU, SOURCE)
    forward = [(case.id, entry.index) for case, entry in list_cases(entries, "forward", "base")]
    assert forward == [
        ("tiny-gpt2-b1-s8-cpu-float32", 0),
        ("tiny-bert-b2-s16-cpu-float32", 1),
        ("tiny-bert-b4-s16-cpu-float32", 1),
    ]
    # The second entry runs under forward only; the first under every mode, with the session's new tokens.
    assert [case.id for case, _ in list_cases(entries, "generate", "causal-lm")] == [
        "tiny-gpt2-b1-s8-n20-cpu-float32"
    ]
    assert [e.config.measure.rounds_for("forward") for e in entries] == [2, 3]
    assert entries[1].record() == {
        "index": 1,
        "name": "bert",
        "model": "tiny-bert",
        "settings": {"batch_sizes": [2, 4], "seq_lens": [16], "rounds": 3, "modes": ["forward"]},
    }
    assert entries[1].config.sources["rounds"] == f"{SOURCE} benchmarks[1]"


def test_two_entries_making_one_item_is_an_error_naming_both() -> None:
    entries = parse_benchmarks(
        [
            {"model": "tiny-gpt2", "batch_sizes": [1, 2]},
            {"model": "tiny-gpt2", "batch_sizes": 2, "rounds": 5},
        ],
        CPU,
        SOURCE,
    )
    with pytest.raises(OptionError) as error:
        list_cases(entries, "forward", "base")
    assert str(error.value).startswith(
        f"{SOURCE}: benchmarks[0] (model tiny-gpt2) and benchmarks[1] (model tiny-gpt2) both make the item "
        "tiny-gpt2-b2-s32-cpu-float32 (mode forward)"
    )
    # Entries for different modes do not collide.
    apart = parse_benchmarks(
        [{"model": "tiny-gpt2", "modes": "forward"}, {"model": "tiny-gpt2", "modes": ["train"]}], CPU, SOURCE
    )
    assert len(list_cases(apart, "forward", "base")) == len(list_cases(apart, "train", "lm")) == 4


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        (
            [{"model": "roberta-large", "batchsize": 1}],
            [
                f"{SOURCE}: benchmarks[0] (model roberta-large): unknown key 'batchsize'",
                "valid keys: model, name",
            ],
        ),
        (
            [
                {"model": "tiny-gpt2"},
                {"model": "tiny-bert"},
                {"model": "roberta-large", "batch_sizes": "1,x"},
            ],
            [f"{SOURCE}: benchmarks[2] (model roberta-large) key batch_sizes: 'x' is not an integer"],
        ),
        ([{"batch_sizes": 1}], [f"{SOURCE}: benchmarks[0]: no model; give model: NAME"]),
        (
            [{"model": "tiny-gpt2", "dtype": "fp8"}],
            ["(model tiny-gpt2) key dtype: unknown dtype 'fp8'; valid:"],
        ),
        (
            [{"model": "m", "isolate": True}],
            ["benchmarks[0] (model m): 'isolate' applies to the whole session"],
        ),
        (
            [{"model": "m", "batch_size": 1}],
            ["'batch_size' is the seeds' spelling", "here use 'batch_sizes'"],
        ),
        (
            [{"models": ["a", "b"]}],
            ["benchmarks[0]: unknown key 'models': an entry names one model with 'model'"],
        ),
        ([{"model": "m", "modes": "infer"}], ["(model m) key modes: unknown mode 'infer'; valid: forward"]),
        ({"model": "m"}, [f"{SOURCE}: benchmarks must be a non-empty list"]),
        ([], ["benchmarks must be a non-empty list"]),
        (["tiny-gpt2"], [f"{SOURCE}: benchmarks[0] must be a mapping"]),
        (
            [{"model_name_or_path": "bert-base-uncased", "batch_size": 0}],
            ["benchmarks[0] (model bert-base-uncased) key batch_size: 0 is below the minimum of 1"],
        ),
        (
            [{"model_name_or_path": "m", "batch_size": 1, "batch_sizes": 2}],
            ["(model m): batch_sizes is given twice ('batch_size' and 'batch_sizes')"],
        ),
    ],
)
def test_entry_errors_name_the_entry_and_the_key(value: Any, fragments: list[str]) -> None:
    with pytest.raises(OptionError) as error:
        parse_benchmarks(value, CPU, SOURCE)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_precedence_entry_over_command_line_over_file_over_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntbench_new_tokens = 7\ntbench_warmup = 4\n")
    name = yaml_file(
        pytester,
        {
            "rounds": 5,
            "warmup": 1,
            "batch_sizes": [3],
            "benchmarks": [{"model": "tiny-gpt2"}, {"model": "tiny-bert", "rounds": 2, "warmup": 0}],
        },
    )
    cfg = configured(pytester, "--tbench-config", name, "--tbench-rounds", "9")
    silent, own = (entry.config for entry in cfg.sweep.benchmarks)
    # Where the entry is silent: command line, then the file's top level, then ini, then the preset.
    assert (
        silent.measure.rounds,
        silent.measure.warmup,
        silent.sweep.batch_sizes,
        silent.sweep.new_tokens,
        silent.sweep.seq_lens,
    ) == (
        9,
        1,
        (3,),
        7,
        (32, 64),
    )
    assert (own.measure.rounds, own.measure.warmup, own.sweep.batch_sizes) == (2, 0, (3,))
    assert (silent.sources["rounds"], own.sources["rounds"]) == (
        "command line",
        f"config file {name} benchmarks[1]",
    )
    assert cfg.notes == (
        f"--tbench-rounds is a default for the benchmark list; benchmarks[1] of config file {name} give "
        "their own rounds, which they keep",
    )


def test_toml_array_of_tables(pytester: pytest.Pytester) -> None:
    (pytester.path / "tb.toml").write_text(
        'rounds = 2\n\n[[benchmarks]]\nmodel = "tiny-gpt2"\nbatch_sizes = 4\n\n'
        '[[benchmarks]]\nmodel = "tiny-bert"\nmodes = ["train"]\nseq_lens = [8, 16]\n'
    )
    cfg = configured(pytester, "--tbench-config", "tb.toml")
    assert [
        (e.model, e.modes, e.config.sweep.batch_sizes, e.config.sweep.seq_lens, e.config.measure.rounds)
        for e in cfg.sweep.benchmarks
    ] == [
        ("tiny-gpt2", None, (4,), (32, 64), 2),
        ("tiny-bert", ("train",), (1, 2), (8, 16), 2),
    ]


@pytest.mark.parametrize(
    ("args", "top", "fragments"),
    [
        (
            ["--tbench-models", "tiny-gpt2"],
            {},
            ["--tbench-models and a benchmark list", "select entries with -k"],
        ),
        ([], {"models": ["tiny-gpt2"]}, ["models in tb.yaml and a benchmark list"]),
        ([], {}, ["benchmarks[0] (model tiny-gpt2) and benchmarks[1] (model tiny-gpt2) both make the item"]),
    ],
)
def test_usage_errors_at_configure(
    pytester: pytest.Pytester, args: list[str], top: dict[str, Any], fragments: list[str]
) -> None:
    # The two entries make the same items; a models setting beside the list is reported first.
    name = yaml_file(
        pytester, {**top, "benchmarks": [{"model": "tiny-gpt2"}, {"model": "tiny-gpt2", "rounds": 1}]}
    )
    with pytest.raises(pytest.UsageError) as error:
        configured(pytester, "--tbench-config", name, *args)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_a_list_run_measures_each_entry_with_its_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    name = yaml_file(
        pytester,
        {
            "warmup": 0,
            "devices": "cpu",
            "benchmarks": [
                {"model": "tiny-gpt2", "batch_sizes": 1, "seq_lens": 8, "rounds": 2},
                {"model": "tiny-bert", "name": "bert", "batch_sizes": 2, "seq_lens": 16, "rounds": 3},
            ],
        },
    )
    result, data = run_json(pytester, "--tbench-config", name, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    # The report's rows (its CSVs) carry the entry as one column to group by.
    assert [row_of(b, "run").extra["benchmark_entry"] for b in data["benchmarks"]] == [
        "0 tiny-gpt2",
        "1 bert",
    ]
    found = {
        b["name"]: (b["stats"]["rounds"], b["extra_info"]["rounds"], b["extra_info"]["benchmark_entry"])
        for b in data["benchmarks"]
    }
    assert found == {
        "test_forward[tiny-gpt2-b1-s8-cpu-float32]": (
            2,
            2,
            {
                "index": 0,
                "name": "tiny-gpt2",
                "model": "tiny-gpt2",
                "settings": {"batch_sizes": [1], "seq_lens": [8], "rounds": 2},
            },
        ),
        "test_forward[tiny-bert-b2-s16-cpu-float32]": (
            3,
            3,
            {
                "index": 1,
                "name": "bert",
                "model": "tiny-bert",
                "settings": {"batch_sizes": [2], "seq_lens": [16], "rounds": 3},
            },
        ),
    }


# -- the seeds' format --------------------------------------------------------------------------------


def test_the_seeds_default_file_reads_as_given(pytester: pytest.Pytester) -> None:
    cfg = configured(pytester, "--tbench-config", str(REPO / "benches" / "seeds_default.yml"))
    shapes = [
        (
            e.model,
            e.config.sweep.batch_sizes,
            e.config.sweep.seq_lens,
            e.config.measure.rounds,
            e.config.sweep.devices,
        )
        for e in cfg.sweep.benchmarks
    ]
    assert shapes == [
        ("bert-base-uncased", (1,), (128,), 100, ("cuda",)),
        ("distilbert-base-uncased", (1,), (128,), 100, ("cuda",)),
        ("bert-large-uncased", (1,), (512,), 50, ("cuda",)),
        ("roberta-large", (1,), (512,), 50, ("cuda",)),
        ("gpt2", (1,), (1024,), 20, ("cuda",)),
        ("facebook/opt-6.7b", (1,), (2048,), 10, ("cuda",)),
        ("openai/clip-vit-base-patch32", (4,), (32, 64), 100, ("cuda",)),  # no length: the preset's
    ]
    # global_settings are the file's top-level settings, so every entry has them.
    assert {
        (e.config.measure.warmup, e.config.sweep.dtype, e.config.run.use_cache) for e in cfg.sweep.benchmarks
    } == {(10, ("float16",), True)}
    assert (cfg.measure.warmup, cfg.run.trust_remote_code, cfg.sources["warmup"]) == (
        10,
        False,
        f"config file {REPO}/benches/seeds_default.yml",
    )
    assert [note.split(": ")[1] for note in cfg.notes] == [
        "output_settings.save_detailed_results",
        "output_settings.save_model_info",
        "output_settings.save_system_info",
        "output_settings.generate_plots",
    ]
    assert "--tbench-report DIR" in cfg.notes[-1]


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        (
            {"global_settings": {"warmup_iteration": 3}},
            ["global_settings: unknown key 'warmup_iteration'", "warmup_iterations"],
        ),
        (
            {"warmup": 2, "global_settings": {"warmup_iterations": 3}},
            ["warmup is given at the top level and as global_settings.warmup_iterations"],
        ),
        ({"global_settings": [1]}, ["global_settings must be a mapping"]),
        (
            {"output_settings": {"save_plots": True}},
            ["output_settings: unknown key 'save_plots'", "generate_plots"],
        ),
    ],
)
def test_seeds_section_errors(values: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(OptionError) as error:
        translate(values, SOURCE)
    assert str(error.value).startswith(SOURCE)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_seeds_value_errors_use_the_seeds_spelling(pytester: pytest.Pytester) -> None:
    name = yaml_file(
        pytester,
        {"global_settings": {"torch_dtype": "fp16"}, "benchmarks": [{"model_name_or_path": "tiny-gpt2"}]},
    )
    with pytest.raises(
        pytest.UsageError,
        match=r"config file tb\.yaml key global_settings\.torch_dtype: unknown dtype 'fp16'",
    ):
        configured(pytester, "--tbench-config", name)


SEEDS_TINY = """
benchmarks:
  - model_name_or_path: tiny-gpt2
    batch_size: 1
    sequence_length: 8
    num_iterations: 2
    device: cpu
  - model_name_or_path: tiny-bert
    batch_size: 2
    sequence_length: 16
    num_iterations: 3
    device: cpu
global_settings:
  warmup_iterations: 0
  torch_dtype: float32
  trust_remote_code: false
  use_cache: true
output_settings:
  generate_plots: false
"""


def test_a_seeds_format_run_in_worker_processes(pytester: pytest.Pytester) -> None:
    """Each worker gets its entry's settings: the rounds and warm-up it runs are the entry's."""
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    (pytester.path / "default.yml").write_text(SEEDS_TINY)
    result, data = run_json(
        pytester, "--tbench-config", "default.yml", "--tbench-isolate", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    found = [
        (b["name"], b["stats"]["rounds"], b["extra_info"]["warmup_rounds"], b["extra_info"]["isolated"])
        for b in data["benchmarks"]
    ]
    assert sorted(found) == [
        ("test_forward[tiny-bert-b2-s16-cpu-float32]", 3, 0, True),
        ("test_forward[tiny-gpt2-b1-s8-cpu-float32]", 2, 0, True),
    ]
    result.stdout.fnmatch_lines(
        ["*tbench CONFIG NOTES*", "config file default.yml: output_settings.generate_plots: as asked*"]
    )


# -- trust_remote_code --------------------------------------------------------------------------------


def test_trust_remote_code_setting(pytester: pytest.Pytester) -> None:
    assert configured(pytester).run.trust_remote_code is False
    cfg = configured(pytester, "--tbench-trust-remote-code")
    assert cfg.run.trust_remote_code is True
    assert cfg.record()["trust_remote_code"] == {"value": True, "source": "command line"}


def test_trust_remote_code_reaches_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pretrained_kwargs("org/model", trust_remote_code=True)["trust_remote_code"] is True
    assert "trust_remote_code" not in pretrained_kwargs("org/model")
    calls: list[tuple[str, dict[str, Any]]] = []

    def config_from_pretrained(target: str, **kwargs: Any) -> GPT2Config:
        calls.append(("config", kwargs))
        return GPT2Config(n_layer=1, n_embd=32, n_head=2)

    def model_from_pretrained(target: str, **kwargs: Any) -> None:
        calls.append(("model", kwargs))
        raise OSError("no weights here")

    monkeypatch.setattr(AutoConfig, "from_pretrained", config_from_pretrained)
    monkeypatch.setattr(AutoModel, "from_pretrained", model_from_pretrained)
    resolved = ModelCache({}, trust_remote_code=True).resolve("org/model")
    assert resolved.describe() == "from_pretrained('org/model', trust_remote_code=True)"
    assert (
        ModelCache({}, trust_remote_code=True).resolve("tiny-gpt2").describe()
        == "builtin config, random weights"
    )
    with pytest.raises(ModelLoadError, match="no weights here"):
        load_model(resolved, ModelKey("org/model", "base", "cpu", "float32"))
    assert [(what, kwargs.get("trust_remote_code")) for what, kwargs in calls] == [
        ("config", True),
        ("model", True),
    ]


@pytest.mark.parametrize("trust", [True, False])
def test_a_worker_loads_with_the_sessions_trust_remote_code(trust: bool) -> None:
    case = BenchCase("forward", "org/model", "base", 1, 8, "cpu", "float32")
    settings = TBenchConfig.of(trust_remote_code=trust)
    job = Job(case, "org/model", "hub", None, "org/model", settings.run, rounds=1, warmup=0)
    assert resolved_spec(job).trust_remote_code is trust
