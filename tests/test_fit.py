"""Fit before you run: the memory estimate from a config, and the skip of an item that cannot fit."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from pytest_tbench.models import fit
from pytest_tbench.models.fit import Dims, MemoryEstimate, WorkShape, dims, work_bytes
from pytest_tbench.models.loading import ModelKey, load_model
from pytest_tbench.models.registry import resolve

GPT2_SMALL_PARAMETERS = 124_439_808  # gpt2 on the Hub, lm_head tied to the embedding


def test_weights_estimate_matches_the_loaded_model() -> None:
    parameters, size = fit.weights(AutoModelForCausalLM, GPT2Config(), torch.float32, "none")
    loaded = load_model(resolve("gpt2"), ModelKey("gpt2", "causal-lm", "cpu", "float32"))
    assert parameters == loaded.num_parameters == GPT2_SMALL_PARAMETERS
    assert size == loaded.parameter_bytes == 4 * GPT2_SMALL_PARAMETERS


def test_weights_estimate_of_an_int8_model_counts_the_untied_head() -> None:
    pytest.importorskip("torchao")
    spec = resolve("tiny-gpt2")
    parameters, size = fit.weights(AutoModelForCausalLM, spec.load_config(), torch.float32, "int8-dynamic")
    key = ModelKey("tiny-gpt2", "causal-lm", "cpu", "float32", quantization="int8-dynamic")
    loaded = load_model(spec, key)
    # Quantizing unties lm_head from the embedding: the int8 copy is a parameter of its own.
    plain, _ = fit.weights(AutoModelForCausalLM, spec.load_config(), torch.float32, "none")
    assert parameters == loaded.num_parameters == plain + 1000 * 64
    assert size == pytest.approx(loaded.parameter_bytes, rel=0.10)  # the bar


def test_weights_estimate_of_a_7b_shape_allocates_nothing() -> None:
    from transformers import MistralConfig

    parameters, size = fit.weights(AutoModelForCausalLM, MistralConfig(), torch.bfloat16, "none")
    assert parameters == 7_241_732_096  # Mistral-7B-v0.1's published count
    assert size == 2 * parameters


def test_dims_read_every_spelling() -> None:
    gpt2 = dims(GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=100))
    assert gpt2 == Dims(hidden=64, layers=3, heads=4, kv_heads=4, intermediate=256, vocab=100)
    from transformers import CLIPConfig

    clip = CLIPConfig(
        text_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
        vision_config={"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4},
    )
    assert (dims(clip).hidden, dims(clip).layers) == (48, 3)  # the larger tower bounds the other


D = Dims(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=256, vocab=1000)


def test_work_estimate_by_mode() -> None:
    forward = work_bytes(D, WorkShape("forward", "causal-lm", 2, 8, 0, 4), 10_000)
    # One layer's live tensors B*S*(8H+2I), the scores B*A*S^2 and the logits B*S*V, at 4 bytes.
    assert forward == (2 * 8 * (8 * 64 + 2 * 256) + 2 * 4 * 8 * 8 + 2 * 8 * 1000) * 4
    base = work_bytes(D, WorkShape("forward", "base", 2, 8, 0, 4), 10_000)
    assert base == forward - 2 * 8 * 1000 * 4  # no LM head, no logits
    generate = work_bytes(D, WorkShape("generate", "causal-lm", 2, 8, 4, 4), 10_000)
    cache = 2 * 2 * 2 * (8 + 4) * 2 * 16 * 4  # K and V, layers, batch, positions, kv heads, head dim, bytes
    assert generate == base + 2 * cache + 2 * 1000 * 4  # the cache twice: it grows by concatenation
    train = work_bytes(D, WorkShape("train", "causal-lm", 2, 8, 0, 4), 10_000)
    assert train > 12 * 10_000  # gradients and two AdamW moments at least


def test_skip_reason_names_what_is_needed_and_free() -> None:
    gib = 1024**3
    assert MemoryEstimate(gib, gib, None, "unknown").skip_reason() is None  # unknown free memory: try it
    assert MemoryEstimate(gib, gib, 3 * gib, "x").skip_reason() is None
    reason = MemoryEstimate(3 * gib, gib, 2 * gib, "the system's available memory").skip_reason()
    assert reason is not None
    assert reason.startswith("needs about 4.0 GiB (weights 3.0 GiB + activations etc. 1.0 GiB)")
    assert "the device has 2.0 GiB free (the system's available memory)" in reason
    assert "--tbench-fit-check false" in reason


def test_free_memory_on_cuda_makes_no_context_where_workers_run_the_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where workers run the item, free memory comes from NVML by the GPU's UUID: cudaMemGetInfo would create
    a context in the pytest process, even with CUDA's runtime initialised already (which is not a context)."""
    from pytest_tbench.machine import devices, nvml

    calls: list[Any] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: calls.append(index) or (5, 9))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(devices, "cuda_uuid", lambda index: f"uuid-{index}")
    monkeypatch.setattr(nvml, "free_bytes", lambda uuid: {"uuid-0": 3, "uuid-1": 4}[uuid])
    assert fit.free_memory("cuda:1", in_this_process=False) == (4, "NVML's free memory")
    assert fit.free_memory("cuda:1", in_this_process=False, every_gpu=True)[0] == 7
    assert calls == []
    monkeypatch.setattr(nvml, "free_bytes", lambda uuid: "NVML Shared Library Not Found")
    free, source = fit.free_memory("cuda:1", in_this_process=False)
    assert free is None and "worker processes" in source and "Not Found" in source and calls == []
    assert fit.free_memory("cuda:1", in_this_process=True) == (5, "cudaMemGetInfo")
    assert calls == [1]
    free, source = fit.free_memory("cpu", in_this_process=False)
    assert free is not None and free > 0 and source == "the system's available memory"


def test_a_loaded_model_needs_no_second_copy_of_its_weights() -> None:
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100)
    shape = WorkShape("forward", "causal-lm", 1, 8, 0, 4)
    fresh = fit.estimate(config, shape, (10, 40), loaded=False, device="cpu", in_this_process=True)
    again = fit.estimate(config, shape, (10, 40), loaded=True, device="cpu", in_this_process=True)
    assert fresh is not None and again is not None
    assert (fresh.weights_bytes, again.weights_bytes) == (40, 0)
    assert fit.estimate(config, shape, None, loaded=False, device="cpu", in_this_process=True) is None
