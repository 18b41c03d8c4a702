"""--tbench-quantization: torchao's int8 schemes applied after loading, gpt2's Conv1D layers converted first,
the quantized weights' bytes recorded, and the skips (train items, torchao missing)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import AutoModel, GPT2Config, LlamaConfig

from pytest_tbench.models import quantization
from pytest_tbench.models.quantization import conv1d_to_linear, quantize, tensor_bytes, unavailable_reason

from .conftest import TINY, run_json

pytest.importorskip("torchao")


def _tiny(config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


def test_conv1d_layers_become_equivalent_linears() -> None:
    model = _tiny(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=64))
    ids = torch.randint(0, 1000, (2, 8))
    with torch.inference_mode():
        before = model(input_ids=ids, use_cache=False).last_hidden_state
    assert conv1d_to_linear(model) == 8  # 4 per block: attention in/out, MLP in/out
    assert isinstance(model.h[0].mlp.c_fc, torch.nn.Linear)
    with torch.inference_mode():
        after = model(input_ids=ids, use_cache=False).last_hidden_state
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("method", ["int8-weight-only", "int8-dynamic"])
def test_int8_schemes_quantize_every_linear_and_shrink_its_bytes(method: str) -> None:
    model = _tiny(
        LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=1000)
    )  # fmt: skip
    linear = model.layers[0].mlp.gate_proj
    float_bytes = tensor_bytes(linear.weight)
    assert float_bytes == 256 * 128 * 4
    assert quantize(model, method) == 14  # 7 per block: q, k, v, o, gate, up, down
    # int8 data (one byte a weight) and a scale per output row.
    assert 256 * 128 <= tensor_bytes(model.layers[0].mlp.gate_proj.weight) < float_bytes / 3
    with torch.inference_mode():
        assert model(input_ids=torch.randint(0, 1000, (1, 8))).last_hidden_state.isfinite().all()


def test_nothing_to_quantize_is_an_error_not_a_float_item() -> None:
    with pytest.raises(quantization.QuantizationError, match=r"no nn\.Linear"):
        quantize(torch.nn.Sequential(torch.nn.ReLU()), "int8-dynamic")


def test_skips_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    assert unavailable_reason("none", train=True, device="cpu") is None
    assert "train items run unquantized" in str(unavailable_reason("int8-dynamic", train=True, device="cpu"))
    assert unavailable_reason("int8-dynamic", train=False, device="cpu") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(
        quantization.importlib.util, "find_spec", lambda name: None if name == "torchao" else real(name)
    )
    reason = unavailable_reason("int8-weight-only", train=False, device="cpu")
    assert "pip install 'pytest-tbench[quant]' (torchao)" in str(reason)


def test_quantized_items_run_and_record_their_weights(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
import pytest

def test_forward(tbench):
    tbench.forward()

@pytest.mark.tbench(mode="train")
def test_train(tbench):
    tbench.train()
"""
    )
    result, data = run_json(pytester, *TINY, "--tbench-quantization", "none,int8-dynamic", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*quantized weights are for inference; train items run unquantized"])
    forward = {b["name"]: b["extra_info"] for b in data["benchmarks"] if b["name"].startswith("test_forward")}
    plain = forward["test_forward[tiny-gpt2-b1-s8-cpu-float32]"]
    int8 = forward["test_forward[tiny-gpt2-b1-s8-cpu-float32-quant:int8-dynamic]"]
    assert (plain["quantization"], plain["quantized_layers"]) == ("none", 0)
    assert (int8["quantization"], int8["quantized_layers"]) == ("int8-dynamic", 8)
    # tiny-gpt2's 8 linear layers hold 98,304 float32 weights (393 KiB); int8 keeps a quarter plus scales.
    assert plain["parameter_bytes"] - int8["parameter_bytes"] > 0.7 * 98_304 * 4
    # FlopCounterMode has no formula for torchao's int8 matmuls: the per-token estimate stands in, saying so.
    assert (plain["flops_method"], int8["flops_method"]) == ("counted", "estimate_2n")
    assert "int8 matmuls (8 quantized layers)" in int8["flops_estimate_reason"]
    assert int8["flops_per_call"] > 0.9 * plain["flops_per_call"]

    bad = pytester.runpytest(*TINY, "--tbench-quantization", "int4")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    valid = "none, int8-weight-only, int8-dynamic, bnb-int8, bnb-nf4, bnb-fp4"
    bad.stderr.fnmatch_lines([f"*unknown quantization 'int4'; valid: {valid}*"])
