"""Model specs (built-in, user config, local directory, Hub id offline), ids, skips, inputs and lifecycle."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, GPT2Config

from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.models.registry import BUILTIN_MODELS, resolve

from .conftest import TINY, run_json


def test_builtin_names_are_real_size_configs() -> None:
    gpt2 = resolve("gpt2").load_config()
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.vocab_size, gpt2.n_positions) == (12, 768, 50257, 1024)
    bert = resolve("bert-base-uncased").load_config()
    assert (bert.num_hidden_layers, bert.hidden_size) == (12, 768)
    smol = resolve("smollm-135m").load_config()
    assert (smol.num_hidden_layers, smol.hidden_size, smol.num_key_value_heads) == (30, 576, 3)
    t5 = resolve("t5-small").load_config()
    assert (t5.d_model, t5.num_layers, t5.is_encoder_decoder) == (512, 6, True)
    assert {resolve(name).kind for name in BUILTIN_MODELS} == {"builtin"}


def test_builtin_gpt2_has_gpt2_small_parameter_count(forward_bench: pytest.Pytester) -> None:
    args = [*TINY, "--tbench-models", "gpt2", "--tbench-rounds", "1"]
    result, data = run_json(forward_bench, *args)
    result.assert_outcomes(passed=1)
    info = data["benchmarks"][0]["extra_info"]
    assert info["num_parameters"] == 124_439_808
    assert info["parameter_bytes"] == 4 * 124_439_808
    assert info["model_class"] == "GPT2Model"
    assert info["model_load_time_s"] > 0


def test_local_directory_is_loaded_with_from_pretrained(forward_bench: pytest.Pytester) -> None:
    saved = forward_bench.path / "my-tiny-gpt2"
    torch.manual_seed(0)
    AutoModel.from_config(
        GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=500, n_positions=64)
    ).save_pretrained(saved)
    result, data = run_json(forward_bench, *TINY, "--tbench-models", str(saved))
    result.assert_outcomes(passed=1)
    bench = data["benchmarks"][0]
    assert bench["name"] == "test_forward[my-tiny-gpt2-b1-s8-cpu-float32]"
    assert bench["extra_info"]["model_source"] == f"from_pretrained({str(saved)!r})"
    expected = sum(p.numel() for p in AutoModel.from_pretrained(saved).parameters())
    assert bench["extra_info"]["num_parameters"] == expected


def test_uncached_hub_id_offline_fails_its_items_fast_and_the_rest_go_on(
    forward_bench: pytest.Pytester,
) -> None:
    start = time.perf_counter()
    result = forward_bench.runpytest(
        *TINY, "--tbench-models", "no-such-org/no-such-model,tiny-gpt2", "--tbench-batch-sizes", "1,2"
    )
    elapsed = time.perf_counter() - start
    # A model that cannot be loaded errors its own items at setup; the other model's items pass.
    result.assert_outcomes(passed=2, errors=2)
    output = result.stdout.str()
    assert "model 'no-such-org/no-such-model' could not be loaded" in output
    assert "HF_HUB_OFFLINE=1" in output and "save_pretrained" in output and "tiny-gpt2" in output
    assert elapsed < 15, "an offline Hub id must fail at once, not after retries"
    # The failure is built once per session, not once per item: both items show the same cached error.
    assert output.count("could not be loaded with from_pretrained") >= 2


def test_user_config_from_conftest(forward_bench: pytest.Pytester) -> None:
    forward_bench.makeconftest(
        """
from transformers import BertConfig
from pytest_tbench import register_model
register_model("bert-64-hid", BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=128, vocab_size=300))
register_model("bert-factory", lambda: BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, vocab_size=300))
"""
    )
    result, data = run_json(forward_bench, *TINY, "--tbench-models", "bert-64-hid,bert-factory")
    result.assert_outcomes(passed=2)
    params = {b["extra_info"]["model"]: b["extra_info"]["num_parameters"] for b in data["benchmarks"]}
    assert params["bert-64-hid"] > params["bert-factory"] > 0
    assert {b["extra_info"]["model_source"] for b in data["benchmarks"]} == {"user config, random weights"}


def test_user_config_from_config_file(forward_bench: pytest.Pytester) -> None:
    forward_bench.makefile(
        ".yaml",
        tbench="""
models: [bert-32-hid, tiny-bert, bad-attr, huge]
custom_models:
  huge:  # 6.4e12 parameters: the fit check skips it before anything is allocated
    base: tiny-gpt2
    overrides: {vocab_size: 100000000000}
  bert-32-hid:
    base: tiny-bert
    overrides: {hidden_size: 32, intermediate_size: 64}
  bad-attr:
    base: bert
    overrides: {hiden_size: 32}
""",
    )
    result, data = run_json(forward_bench, *TINY[2:], "--tbench-config", "tbench.yaml", "-rs")
    result.assert_outcomes(passed=2, errors=1, skipped=1)
    params = {b["extra_info"]["model"]: b["extra_info"]["num_parameters"] for b in data["benchmarks"]}
    assert 0 < params["bert-32-hid"] < params["tiny-bert"]
    result.stdout.fnmatch_lines(["*needs about 2384?.? GiB (weights 2384?.? GiB*GiB free*"])
    for entry in data["benchmarks"]:  # the estimate beside the measurement
        info = entry["extra_info"]
        assert info["weights_estimate_bytes"] == info["parameter_bytes"]
        assert info["memory_estimate_bytes"] > info["parameter_bytes"]
    result.stdout.fnmatch_lines(["*custom model 'bad-attr': BertConfig has no attribute(s) ?'hiden_size'?*"])


def test_ids_are_stable_and_readable(forward_bench: pytest.Pytester) -> None:
    result = forward_bench.runpytest(
        *TINY, "--tbench-models", "tiny-gpt2,tiny-t5", "--tbench-batch-sizes", "1,4", "--collect-only", "-q"
    )
    assert [line for line in result.outlines if "::" in line] == [
        "test_bench.py::test_forward[tiny-gpt2-b1-s8-cpu-float32]",
        "test_bench.py::test_forward[tiny-gpt2-b4-s8-cpu-float32]",
        "test_bench.py::test_forward[tiny-t5-b1-s8-cpu-float32]",
        "test_bench.py::test_forward[tiny-t5-b4-s8-cpu-float32]",
    ]


def test_skips_name_their_reason(forward_bench: pytest.Pytester) -> None:
    # tiny-gpt2 allows 256 positions; 4 x 200 = 800 is over a max product of 500.
    args = [
        "--tbench-batch-sizes",
        "1,4",
        "--tbench-seq-lens",
        "8,200,300",
        "--tbench-max-batch-input-product",
        "500",
    ]
    result = forward_bench.runpytest(*TINY, *args, "-rs")
    result.assert_outcomes(passed=3, skipped=3)
    result.stdout.fnmatch_lines(
        ["*batch 4 x input length 200 = 800 exceeds --tbench-max-batch-input-product 500*"]
    )
    result.stdout.fnmatch_lines(["*input length 300 exceeds tiny-gpt2's max positions (256)*"])


def test_json_holds_units_raw_samples_and_environment(forward_bench: pytest.Pytester) -> None:
    result, data = run_json(forward_bench, *TINY, "--tbench-rounds", "3")
    result.assert_outcomes(passed=1)
    bench = data["benchmarks"][0]
    assert bench["params"]["tbench_case"] == {
        "mode": "forward",
        "model": "tiny-gpt2",
        "head": "base",
        "batch_size": 1,
        "seq_len": 8,
        "device": "cpu",
        "dtype": "float32",
        "new_tokens": 0,
        "attn_implementation": "auto",  # the variant axes at their defaults
        "compile": "off",
        "quantization": "none",
        "backend": "pytorch",
        "media": "",
        "device_map": "none",
        "tp": "1",
    }
    stats, info = bench["stats"], bench["extra_info"]
    assert len(stats["data"]) == stats["rounds"] == 3
    assert info["median_s"] == pytest.approx(stats["median"])
    assert info["throughput_samples_per_s"] == pytest.approx(1 / stats["median"])
    assert info["throughput_tokens_per_s"] == pytest.approx(8 / stats["median"])
    for key in ("peak_memory_bytes", "peak_rss_bytes", "peak_memory_increase_bytes", "model_load_time_s"):
        assert key in info
    env = data["machine_info"]["tbench"]
    assert env["torch_version"] == torch.__version__
    assert env["cuda_available"] is False and env["gpus"] == []
    assert env["nvml"].startswith("NVML absent") or env["nvml"] == "present"
    assert env["ram_total_bytes"] > 0


def test_autosave_then_compare_with_pytest_benchmark(forward_bench: pytest.Pytester) -> None:
    storage = forward_bench.path / "bench-store"
    first = forward_bench.runpytest(*TINY, "--benchmark-autosave", f"--benchmark-storage={storage}")
    first.assert_outcomes(passed=1)
    second = forward_bench.runpytest(
        *TINY, "--benchmark-autosave", f"--benchmark-storage={storage}", "--benchmark-compare"
    )
    second.assert_outcomes(passed=1)
    second.stderr.fnmatch_lines(["*Comparing against benchmarks from*0001*"])
    saved = sorted(Path(storage).rglob("*.json"))
    assert len(saved) == 2
    cli = forward_bench.run("pytest-benchmark", "--storage", str(storage), "compare", "0001", "0002")
    assert cli.ret == 0
    for run in ("0001", "0002"):
        cli.stdout.fnmatch_lines([f"*test_forward?tiny-gpt2-b1-s8-cpu-float32? ({run}*"])


def test_each_model_loads_once_and_is_released_after_its_last_item(forward_bench: pytest.Pytester) -> None:
    forward_bench.makeconftest(
        """
import pytest_tbench.models.loading as loading
LOADS = []
_real = loading.load_model
def counting(resolved, key):
    LOADS.append(key.spec)
    return _real(resolved, key)
loading.load_model = counting
"""
    )
    forward_bench.makepyfile(
        test_zz_after="""
from pytest_tbench.plugin.state import STATE
import conftest

def test_state(request):
    loaded = request.config.stash[STATE].models._loaded
    assert conftest.LOADS == ["tiny-gpt2", "tiny-bert"]
    assert loaded == {}
"""
    )
    result = forward_bench.runpytest(
        *TINY, "--tbench-models", "tiny-gpt2,tiny-bert", "--tbench-seq-lens", "8,16"
    )
    result.assert_outcomes(passed=5)


def test_inputs_are_exact_in_vocab_distinct_and_seeded() -> None:
    config = GPT2Config(vocab_size=50)
    first = make_inputs(config, 6, 33, "cpu")
    ids = first["input_ids"]
    assert ids.shape == (6, 33) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < 50
    assert len({tuple(row.tolist()) for row in ids}) == 6
    assert torch.equal(first["attention_mask"], torch.ones(6, 33, dtype=torch.long))
    assert torch.equal(make_inputs(config, 6, 33, "cpu")["input_ids"], ids)
    assert "decoder_input_ids" not in first
    t5 = make_inputs(resolve("tiny-t5").load_config(), 2, 5, "cpu")
    assert torch.equal(t5["decoder_input_ids"], t5["input_ids"])


def test_the_run_records_the_settings_and_where_they_came_from(forward_bench: pytest.Pytester) -> None:
    result, data = run_json(forward_bench, *TINY, "--tbench-preset", "small_scale")
    result.assert_outcomes(passed=1)
    settings = data["machine_info"]["tbench"]["settings"]
    assert settings["preset"] == {"value": "small_scale", "source": "command line"}
    assert settings["models"] == {"value": ["tiny-gpt2"], "source": "command line"}
    assert settings["new_tokens"] == {"value": 30, "source": "preset small_scale"}
