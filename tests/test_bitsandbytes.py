"""--tbench-quantization bnb-int8 / bnb-nf4 / bnb-fp4: bitsandbytes layers that transformers' from_pretrained
puts in (a random-weight model is saved first), on the CPU here; the packed weights' bytes and their logical
parameter count, the fit estimate against the loaded model, and the skips (bitsandbytes missing, a device its
build has no backend for, train items)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM

from pytest_tbench.models import fit, quantization
from pytest_tbench.models.loading import ModelKey, load_model
from pytest_tbench.models.quantization import bitsandbytes_config, unavailable_reason
from pytest_tbench.models.registry import resolve

from .conftest import TINY, run_json

bitsandbytes = pytest.importorskip("bitsandbytes")

# tiny-gpt2's 8 Conv1D layers (attention in/out, MLP in/out, two blocks): 98,304 weights, 576 output
# features per block. Its lm_head is tied to the embedding, which bitsandbytes leaves in float.
LAYER_WEIGHTS = 98_304
PLAIN_BYTES_QUANTIZED_PART = 4 * LAYER_WEIGHTS


def test_skips_name_the_extra_the_device_and_train(monkeypatch: pytest.MonkeyPatch) -> None:
    assert unavailable_reason("bnb-nf4", train=False, device="cpu") is None
    assert "train items run unquantized" in str(unavailable_reason("bnb-int8", train=True, device="cpu"))
    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"})
    reason = str(unavailable_reason("bnb-nf4", train=False, device="cpu"))
    assert f"bitsandbytes {bitsandbytes.__version__} has no cpu backend (it supports cuda)" in reason
    real = importlib.util.find_spec
    monkeypatch.setattr(
        quantization.importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name)
    )
    reason = str(unavailable_reason("bnb-int8", train=False, device="cuda:0"))
    assert reason.startswith("quantization bnb-int8 needs bitsandbytes: pip install 'pytest-tbench[quant]'")


def test_configs_ask_transformers_for_each_method() -> None:
    int8 = bitsandbytes_config("bnb-int8", torch.float16)
    assert (int8.load_in_8bit, int8.load_in_4bit) == (True, False)
    nf4 = bitsandbytes_config("bnb-nf4", torch.bfloat16)
    assert (nf4.load_in_4bit, nf4.bnb_4bit_quant_type) == (True, "nf4")
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert bitsandbytes_config("bnb-fp4", torch.float32).bnb_4bit_quant_type == "fp4"


@pytest.mark.parametrize(
    ("method", "quantized_bytes"),
    [
        # A byte a weight and a float32 scale per output row (576 a block).
        ("bnb-int8", LAYER_WEIGHTS + 4 * 2 * 576),
        # Two weights a byte and a float32 absmax per block of 64 weights.
        ("bnb-nf4", LAYER_WEIGHTS // 2 + 4 * LAYER_WEIGHTS // 64),
    ],
)
def test_loaded_layers_their_bytes_and_the_fit_estimate(method: str, quantized_bytes: int) -> None:
    spec = resolve("tiny-gpt2")
    plain = load_model(spec, ModelKey("tiny-gpt2", "causal-lm", "cpu", "float32"))
    loaded = load_model(spec, ModelKey("tiny-gpt2", "causal-lm", "cpu", "float32", quantization=method))
    assert loaded.quantized_layers == 8
    kinds = {bitsandbytes.nn.Linear8bitLt if method == "bnb-int8" else bitsandbytes.nn.Linear4bit}
    assert {type(loaded.model.transformer.h[0].mlp.c_fc)} == kinds
    # The tied lm_head stays the float embedding; packed 4-bit weights still count as the layer's weights.
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    assert loaded.num_parameters == plain.num_parameters
    assert plain.parameter_bytes - loaded.parameter_bytes == PLAIN_BYTES_QUANTIZED_PART - quantized_bytes
    # The estimate made on the meta device before loading is exact.
    estimate = fit.weights(AutoModelForCausalLM, spec.load_config(), torch.float32, method)
    assert estimate == (loaded.num_parameters, loaded.parameter_bytes)
    ids = torch.randint(0, 1000, (1, 8))
    with torch.inference_mode():
        expected = plain.model(input_ids=ids, use_cache=False).logits
        got = loaded.model(input_ids=ids, use_cache=False).logits
    # Quantized, not float under a quantized label, and still the same model.
    assert not torch.equal(got, expected)
    assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) > 0.9


def test_items_run_and_record_what_they_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
import pytest

def test_forward(tbench):
    tbench.forward()

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""
    )
    result, data = run_json(pytester, *TINY, "--tbench-quantization", "none,bnb-int8,bnb-nf4", "-rs")
    result.assert_outcomes(passed=6)
    extra = {b["name"]: b["extra_info"] for b in data["benchmarks"]}
    plain = extra["test_forward[tiny-gpt2-b1-s8-cpu-float32]"]
    nf4 = extra["test_forward[tiny-gpt2-b1-s8-cpu-float32-quant:bnb-nf4]"]
    (int8,) = [
        info for name, info in extra.items() if name.startswith("test_generate") and "bnb-int8" in name
    ]
    assert (nf4["quantization"], nf4["quantized_layers"], int8["quantized_layers"]) == ("bnb-nf4", 8, 8)
    assert plain["parameter_bytes"] - nf4["parameter_bytes"] > 0.8 * PLAIN_BYTES_QUANTIZED_PART
    assert nf4["num_parameters"] == plain["num_parameters"]
    assert (plain["flops_method"], nf4["flops_method"]) == ("counted", "estimate_2n")
    assert "bitsandbytes' 4-bit matmuls (8 quantized layers)" in nf4["flops_estimate_reason"]
