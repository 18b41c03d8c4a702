"""How close to the hardware's limit: FLOPs counted exactly (a Linear of known shape, attention on CPU, a
whole GPT-2 forward), the peak table and the MFU / MBU arithmetic, what a decode step reads, and the energy
meters' arithmetic with fake counters (NVML, a powercap tree in tmp_path) and a fake clock."""

from __future__ import annotations

import json
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model, LlamaForCausalLM

from pytest_tbench.machine import nvml
from pytest_tbench.machine.hardware import KNOWN_DEVICES, known_device, peak_bandwidth, peak_tflops
from pytest_tbench.measure.limits import GivenPeaks, limits_info
from pytest_tbench.measure.trackers.compiles import dynamo_frame_compiles
from pytest_tbench.measure.trackers.energy import (
    EnergyMeasurement,
    EnergyWindow,
    NvmlEnergyMeter,
    pooled_energy,
    rapl_meter,
)
from pytest_tbench.measure.work import Work
from pytest_tbench.models.flops import FlopEstimate, FlopPass, Mark, count_flops, matmul_parameters
from pytest_tbench.models.registry import BUILTIN_MODELS
from pytest_tbench.scenarios.decode_reads import decode_reads, kv_layout
from pytest_tbench.scenarios.generate import forward_tokens

from .conftest import ALL_MODES_BENCH, TINY, run_json

NO_ESTIMATE = FlopEstimate(2, 1, 1)


def counted(run: Callable[[Mark], object]) -> Any:
    count = count_flops(FlopPass(run, NO_ESTIMATE))
    assert count.method == "counted", count.estimate_reason
    return count


# --- FLOPs ---


@pytest.mark.parametrize("bias", [False, True])
def test_a_linear_layer_counts_2mnk(bias: bool) -> None:
    m, k, n = 7, 13, 5
    layer = torch.nn.Linear(k, n, bias=bias)
    x = torch.randn(m, k)
    assert counted(lambda mark: layer(x)).flops == 2 * m * n * k  # the bias add is elementwise: not counted


def test_backward_counts_the_input_and_weight_gradients() -> None:
    m, k, n = 4, 6, 3
    layer = torch.nn.Linear(k, n)
    x = torch.randn(m, k, requires_grad=True)
    # forward 2mnk, then dL/dx = dL/dy @ W (2mnk) and dL/dW = dL/dy^T @ x (2mnk)
    assert counted(lambda mark: layer(x).sum().backward()).flops == 6 * m * n * k


def test_marks_split_the_count_into_phases() -> None:
    m, k, n = 3, 8, 4
    layer = torch.nn.Linear(k, n, bias=False)
    x = torch.randn(m, k)

    def run(mark: Mark) -> None:
        layer(x)
        mark("prefill")
        for _ in range(3):
            layer(x)
            layer(x)
            mark("decode")

    count = counted(run)
    assert count.phases == {"prefill": 2 * m * n * k, "decode": 6 * 2 * m * n * k}
    assert count.flops == 7 * 2 * m * n * k
    assert count.extra_info() == {
        "flops_per_call": count.flops,
        "flops_method": "counted",
        "prefill_flops": 2 * m * n * k,
        "decode_flops": 12 * m * n * k,
    }


def test_attention_on_cpu_is_counted() -> None:
    """torch's table has formulas for the CUDA attention kernels only; on CPU sdpa runs as
    ``_scaled_dot_product_flash_attention_for_cpu``, which would count as nothing without ours."""
    b, h, s, d = 2, 3, 5, 4
    q, k, v = (torch.randn(b, h, s, d, requires_grad=True) for _ in range(3))
    forward = 2 * (2 * b * h * s * s * d)  # scores q @ k^T and the weighted sum over v
    assert counted(lambda mark: torch.nn.functional.scaled_dot_product_attention(q, k, v)).flops == forward
    both = counted(lambda mark: torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward())
    # torch's backward formula: the scores recomputed (flash kernels keep no attention matrix), then four
    # gradient products
    assert both.flops == forward + 5 * (2 * b * h * s * s * d)


def _flash_attn_ops() -> Any:
    """flash-attn 2's forward and varlen forward as it registers them (``flash_attn::``), with CPU kernels:
    flash-attn itself needs a GPU. Defined once per process."""
    if not hasattr(torch.ops.flash_attn, "_flash_attn_forward"):

        @torch.library.custom_op("flash_attn::_flash_attn_forward", mutates_args=())
        def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, enable_gqa=True
            )
            return out.transpose(1, 2).contiguous()

        @torch.library.custom_op("flash_attn::_flash_attn_varlen_forward", mutates_args=())
        def varlen(
            q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor
        ) -> torch.Tensor:
            return torch.empty_like(q)

        @torch.library.custom_op("flash_attn::_flash_attn_backward", mutates_args=())
        def backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return torch.empty_like(q)

    return torch.ops.flash_attn


def test_flash_attention_2_is_counted_as_sdpa_is() -> None:
    """transformers' flash_attention_2 calls flash-attn's custom ops, for which torch's counter has no
    formula: without ours an item's attention FLOPs count as zero (attention alone: nothing counted)."""
    ops = _flash_attn_ops()
    b, s, h, h_kv, d = 2, 6, 4, 2, 8  # flash-attn's layout (batch, seqlen, heads, head_dim); GQA
    q = torch.randn(b, s, h, d)
    k, v = torch.randn(b, s, h_kv, d), torch.randn(b, s, h_kv, d)
    full = 2 * (2 * b * h * s * s * d)  # scores and the weighted sum, per query head, as sdpa counts
    assert counted(lambda mark: ops._flash_attn_forward(q, k, v, True)).flops == full
    sdpa = counted(
        lambda mark: torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), enable_gqa=True
        )
    )
    assert sdpa.flops == full  # the same item under sdpa reports the same FLOPs
    # The backward as torch counts sdpa's: the scores recomputed, then four gradient products.
    assert counted(lambda mark: ops._flash_attn_backward(q, q, k, v)).flops == 5 * full // 2
    # Varlen: two sequences of 2 and 4 tokens packed as (6, heads, head_dim): each counted at its length.
    packed_q, packed_kv = torch.randn(6, h, d), torch.randn(6, h_kv, d)
    offsets = torch.tensor([0, 2, 6], dtype=torch.int32)
    varlen = counted(
        lambda mark: ops._flash_attn_varlen_forward(packed_q, packed_kv, packed_kv, offsets, offsets)
    )
    assert varlen.flops == 2 * (2 * h * d) * (2 * 2 + 4 * 4)


def test_compiled_code_is_counted_as_the_eager_code_it_replaces() -> None:
    """Compiled kernels would bypass the dispatcher the counter listens on; dynamo runs a compiled frame
    eagerly while the counter's mode is active, and compiles nothing for it. (This file's one compile.)"""
    m, k, n = 4, 16, 8
    layer = torch.nn.Linear(k, n, bias=False)
    compiled = torch.compile(layer)
    x = torch.randn(m, k)
    compiled(x)  # compiled before the count, as the rounds compile it before the count pass
    compiles = dynamo_frame_compiles()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor does the count warn about the counter's global module hooks
        assert counted(lambda mark: compiled(x)).flops == 2 * m * n * k
    assert dynamo_frame_compiles() == compiles


def test_the_estimate_stands_in_where_counting_fails() -> None:
    def broken(mark: Mark) -> None:
        raise RuntimeError("no dispatch for a custom kernel")

    count = count_flops(FlopPass(broken, FlopEstimate(6, 1000, 32)))
    assert (count.flops, count.method) == (6 * 1000 * 32, "estimate_6n")
    assert "RuntimeError: no dispatch for a custom kernel" in str(count.estimate_reason)
    assert count.extra_info()["flops_estimate_reason"] == count.estimate_reason

    # Only elementwise ops (as when the matmuls run in kernels the mode cannot see): zero is not a count.
    blind = count_flops(FlopPass(lambda mark: torch.ones(4) * 2, FlopEstimate(2, 10, 3)))
    assert (blind.flops, blind.method) == (60, "estimate_2n")
    assert "no matmul FLOPs" in str(blind.estimate_reason)


TINY_GPT2 = GPT2Config(
    n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=256, bos_token_id=999, eos_token_id=999
)


def test_matmul_parameters_leave_out_looked_up_tables_but_not_a_tied_head() -> None:
    torch.manual_seed(0)
    base = GPT2Model(TINY_GPT2)
    lm = GPT2LMHeadModel(TINY_GPT2)
    tables = TINY_GPT2.vocab_size * 64 + TINY_GPT2.n_positions * 64  # wte + wpe
    total = sum(p.numel() for p in base.parameters())
    assert matmul_parameters(base).count == total - tables
    # The LM head is wte itself (tied): multiplied with whole at every token, so it counts, once.
    assert lm.lm_head.weight is lm.transformer.wte.weight
    assert matmul_parameters(lm).count == total - TINY_GPT2.n_positions * 64
    assert matmul_parameters(lm).bytes == 4 * matmul_parameters(lm).count


def test_a_whole_gpt2_forward_is_counted_exactly() -> None:
    """Per layer: qkv (d -> 3d), out projection (d -> d) and the MLP (d -> 4d -> d) on every token, and
    attention's two products per head over the whole sequence."""
    torch.manual_seed(0)
    model = GPT2Model(TINY_GPT2).eval()
    b, s, d, layers = 2, 8, 64, 2
    ids = torch.randint(0, 1000, (b, s))
    tokens = b * s
    per_layer = 2 * tokens * (3 * d * d + d * d + 4 * d * d + 4 * d * d) + 2 * (2 * b * s * s * d)
    with torch.inference_mode():
        count = counted(lambda mark: model(input_ids=ids, use_cache=False))
    assert count.flops == layers * per_layer
    # Against the 2N-per-token estimate: N counts biases and norms too, and no attention: within a few %.
    estimate = FlopEstimate(2, matmul_parameters(model).count, tokens).flops
    assert abs(count.flops - estimate) / count.flops < 0.05


def test_generate_tokens_through_the_model() -> None:
    assert forward_tokens(batch=2, seq_len=10, new_tokens=4, use_cache=True) == 2 * (10 + 3)
    assert forward_tokens(batch=2, seq_len=10, new_tokens=4, use_cache=False) == 2 * (10 + 11 + 12 + 13)


# --- the peak table and the MFU / MBU arithmetic ---


@pytest.mark.parametrize(
    ("reported", "entry", "bf16", "bandwidth_gb_per_s"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5, 3350),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.5, 2000),
        ("NVIDIA H100 NVL", "H100 NVL", 835.5, 3900),
        ("NVIDIA H200", "H200 SXM", 989.5, 4800),
        ("NVIDIA H200 NVL", "H200 NVL", 835.5, 4800),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 312, 2039),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", 312, 1935),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB", 312, 1555),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB", 312, 1555),
        ("NVIDIA L4", "L4", 121, 300),
        ("NVIDIA L40S", "L40S", 362.05, 864),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2, 1008),
    ],
)
def test_device_names_torch_reports_find_their_dense_peaks(
    reported: str, entry: str, bf16: float, bandwidth_gb_per_s: float
) -> None:
    found = known_device(reported)
    assert found is not None and found.name == entry
    assert found.tflops["bfloat16"] == bf16 and found.bandwidth_gb_per_s == bandwidth_gb_per_s


@pytest.mark.parametrize(
    "name", ["NVIDIA L40", "NVIDIA GeForce RTX 4090 D", "NVIDIA GH200 480GB", "Tesla V100-SXM2-16GB"]
)
def test_other_devices_are_not_taken_for_a_known_one(name: str) -> None:
    assert known_device(name) is None


def test_a_mig_slice_gets_no_whole_gpu_peak() -> None:
    name = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    assert known_device(name) is None
    for peak in (peak_tflops("cuda", name, "bfloat16", None), peak_bandwidth("cuda", name, None)):
        assert peak.value is None and "MIG slice" in peak.source and "--tbench-peak" in peak.source
    assert peak_tflops("cuda", name, "bfloat16", 44.6).value == 44.6  # the user's own figure still applies


def test_every_entry_is_dense_and_sourced() -> None:
    for entry in KNOWN_DEVICES:
        tflops = entry.tflops
        assert set(tflops) == {"float32", "tf32", "float16", "bfloat16"}
        assert tflops["float32"] <= tflops["tf32"] < tflops["bfloat16"] == tflops["float16"]
        assert entry.source.startswith("https://")
    # The datasheet prints 1,979 TFLOPS "with sparsity" for an H100 SXM's bf16; the dense rate is half.
    h100 = known_device("NVIDIA H100 80GB HBM3")
    assert h100 is not None and h100.tflops["bfloat16"] == 989.5


def test_the_peak_follows_the_matmul_precision() -> None:
    name = "NVIDIA H100 80GB HBM3"
    assert peak_tflops("cuda", name, "float32", None).value == 67  # TF32 off: CUDA cores
    assert peak_tflops("cuda", name, "tf32", None).value == 494.5
    assert peak_tflops("cuda:1", name, "float16", None).value == 989.5
    assert "datasheet" in peak_tflops("cuda", name, "bfloat16", None).source


def test_mfu_is_achieved_over_the_peak() -> None:
    info = {
        "device": "cuda",
        "device_name": "NVIDIA H100 80GB HBM3",
        "matmul_precision": "bfloat16",
        "flops_per_call": 2.47375e12,  # at a 5 ms median: 494.75 TFLOP/s, half the dense peak
    }
    derived = limits_info(info, 0.005, GivenPeaks())
    assert derived["achieved_tflops"] == pytest.approx(494.75)
    assert derived["peak_tflops"] == 989.5 and "H100 SXM bfloat16 dense" in derived["peak_tflops_source"]
    assert derived["mfu"] == pytest.approx(0.5)

    given = limits_info(info, 0.005, GivenPeaks(tflops=600))
    assert (given["peak_tflops"], given["peak_tflops_source"]) == (600, "--tbench-peak-tflops")
    assert given["mfu"] == pytest.approx(494.75 / 600)


def test_a_tensor_parallel_item_is_judged_against_one_peak_per_gpu_rank() -> None:
    info = {
        "device": "cuda",
        "device_name": "NVIDIA H100 80GB HBM3",
        "matmul_precision": "bfloat16",
        "flops_per_call": 2.47375e12,  # both ranks' shards: 494.75 TFLOP/s at 5 ms, a quarter of 2 x 989.5
        "tp_ranks": 2,
    }
    derived = limits_info(info, 0.005, GivenPeaks())
    assert derived["peak_tflops"] == 2 * 989.5 and "x 2 GPUs" in derived["peak_tflops_source"]
    assert derived["mfu"] == pytest.approx(0.25)
    # Ranks on the CPU share its cores: one peak, as given.
    on_cpu = {**info, "device": "cpu", "device_name": "AMD EPYC"}
    assert limits_info(on_cpu, 0.005, GivenPeaks(tflops=1000))["mfu"] == pytest.approx(0.49475)


def test_on_cpu_mfu_needs_a_given_peak() -> None:
    info = {"device": "cpu", "device_name": "AMD EPYC", "matmul_precision": "float32", "flops_per_call": 3e9}
    derived = limits_info(info, 0.01, GivenPeaks())
    assert derived["achieved_tflops"] == pytest.approx(0.3)
    assert "mfu" not in derived and "peak_tflops" not in derived
    assert "--tbench-peak-tflops" in derived["peak_tflops_unavailable"]
    assert limits_info(info, 0.01, GivenPeaks(tflops=1.5))["mfu"] == pytest.approx(0.2)


def test_an_unknown_gpu_says_how_to_give_its_peak() -> None:
    info = {
        "device": "cuda",
        "device_name": "Fake GPU",
        "matmul_precision": "float16",
        "flops_per_call": 1e12,
    }
    reason = limits_info(info, 1.0, GivenPeaks())["peak_tflops_unavailable"]
    assert "'Fake GPU'" in reason and "--tbench-peak-tflops" in reason and "H100 SXM" in reason


def test_no_median_no_achieved_and_no_flops_no_keys() -> None:
    info = {"device": "cpu", "device_name": "x", "matmul_precision": "float32", "flops_per_call": 1e9}
    assert "achieved_tflops" not in limits_info(info, None, GivenPeaks(tflops=1))
    assert limits_info({"device": "cpu", "device_name": "x"}, 0.1, GivenPeaks(tflops=1)) == {}


def test_decode_bandwidth_is_bytes_per_step_over_the_step_latency() -> None:
    info = {
        "device": "cuda",
        "device_name": "NVIDIA H100 80GB HBM3",
        "decode_weights_read_bytes": 1_000_000_000,
        "decode_kv_read_bytes": 675_000_000,
        "decode_token_latency_mean_s": 0.001,
    }
    derived = limits_info(info, 0.2, GivenPeaks())
    assert derived["decode_bandwidth_bytes_per_s"] == pytest.approx(1.675e12)
    assert derived["peak_bandwidth_bytes_per_s"] == 3.35e12
    assert derived["mbu"] == pytest.approx(0.5)
    given = limits_info(info, 0.2, GivenPeaks(bandwidth_gb_per_s=2000))
    assert given["peak_bandwidth_bytes_per_s"] == 2e12 and given["mbu"] == pytest.approx(1.675 / 2)
    cpu = limits_info({**info, "device": "cpu", "device_name": "AMD EPYC"}, 0.2, GivenPeaks())
    assert "mbu" not in cpu and "--tbench-peak-bandwidth" in cpu["peak_bandwidth_unavailable"]
    assert peak_bandwidth("cpu", "AMD EPYC", 20).value == 20e9


# --- what a decode step reads ---


def test_kv_read_is_the_cache_at_the_mean_decode_context() -> None:
    config = types.SimpleNamespace(
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16
    )
    per_position = 2 * 2 * 16 * 2  # keys and values x kv heads x head_dim x 2 bytes, per layer
    reads = decode_reads(config, 1000, 2, batch=3, seq_len=10, new_tokens=5, use_cache=True)
    # decode steps 1..4 attend to 11..14 positions: 12.5 on average, over 2 layers and 3 rows
    assert reads == {"decode_weights_read_bytes": 1000, "decode_kv_read_bytes": 3 * 2 * per_position * 12.5}


def test_a_sliding_window_caps_the_positions_read() -> None:
    config = types.SimpleNamespace(
        num_hidden_layers=2,
        num_attention_heads=2,
        hidden_size=32,
        sliding_window=12,
        layer_types=["sliding_attention", "full_attention"],
    )
    layout = kv_layout(config, 4)
    assert not isinstance(layout, str)
    per_position = 2 * 2 * 16 * 4
    assert layout.read_bytes(14) == per_position * 12 + per_position * 14


def test_what_cannot_be_read_off_a_config_says_why() -> None:
    plain = types.SimpleNamespace(num_hidden_layers=1, num_attention_heads=1, hidden_size=8)
    assert (
        "use_cache is off"
        in decode_reads(plain, 1, 4, 1, 4, 4, use_cache=False)["decode_bandwidth_unavailable"]
    )
    assert (
        "no decode step" in decode_reads(plain, 1, 4, 1, 4, 1, use_cache=True)["decode_bandwidth_unavailable"]
    )
    t5 = types.SimpleNamespace(is_encoder_decoder=True)
    assert "encoder-decoder" in decode_reads(t5, 1, 4, 1, 4, 4, True)["decode_bandwidth_unavailable"]
    mamba = types.SimpleNamespace(num_hidden_layers=2, layer_types=["mamba", "mamba"], num_attention_heads=1)
    assert isinstance(kv_layout(mamba, 2), str)


def _cache_bytes(cache: Any) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


@pytest.mark.parametrize(
    "model",
    [
        lambda: GPT2LMHeadModel(TINY_GPT2),
        # tiny-llama: grouped-query attention, 2 KV heads for 4 query heads
        lambda: LlamaForCausalLM(BUILTIN_MODELS["tiny-llama"]()),
    ],
    ids=["gpt2", "llama-gqa"],
)
def test_the_layout_matches_the_cache_generate_builds(model: Callable[[], torch.nn.Module]) -> None:
    torch.manual_seed(0)
    lm: Any = model().eval()
    batch, prompt, new = 2, 6, 4
    with torch.inference_mode():
        out = lm.generate(
            input_ids=torch.randint(0, 999, (batch, prompt)),
            attention_mask=torch.ones(batch, prompt, dtype=torch.long),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            return_dict_in_generate=True,
            pad_token_id=0,
        )
    layout = kv_layout(lm.config, 4)
    assert not isinstance(layout, str)
    # The cache ends holding every position but the last token, which is never fed back.
    assert _cache_bytes(out.past_key_values) == batch * layout.read_bytes(prompt + new - 1)


# --- energy ---


class FakeMeter:
    """A counter in millijoules that the test advances, as a GPU's would while the work runs."""

    name = "fake meter"

    def __init__(self, min_window_s: float = 1.0) -> None:
        self.mj = 0
        self.min_window_s = min_window_s
        self.reads: list[int] = []

    def read(self) -> tuple[int, ...]:
        self.reads.append(self.mj)
        return (self.mj,)

    def joules(self, start: tuple[int, ...], end: tuple[int, ...]) -> float:
        return (end[0] - start[0]) / 1000


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _rounds(window: EnergyWindow, clock: FakeClock, meter: FakeMeter, calls: int, call_s: float) -> None:
    """Rounds as the launchers run them: before_round, the timed call (the device draws 300 W, so the counter
    advances), after_round, and a 0.1 s gap at 100 W before the next round."""

    def call() -> None:
        clock.now += call_s
        meter.mj += round(300 * call_s * 1000)

    work = window.wrap(Work(call, samples=1, tokens=4))
    for _ in range(calls):
        work.before_round()
        work.call()
        work.after_round()
        clock.now += 0.1
        meter.mj += 100 * 100


def test_the_window_spans_the_measured_rounds_only() -> None:
    meter, clock = FakeMeter(), FakeClock()
    window = EnergyWindow(meter, warmup=2, rounds=3, clock=clock)
    _rounds(window, clock, meter, calls=6, call_s=0.5)  # 2 warm-up, 3 measured, 1 after (cprofile's pass)
    result = window.result()
    assert isinstance(result, EnergyMeasurement)
    # measured: 3 calls of 0.5 s at 300 W with 2 gaps of 0.1 s at 100 W between them
    assert result.joules == pytest.approx(3 * 150 + 2 * 10)
    assert result.window_s == pytest.approx(1.7) and result.busy_s == pytest.approx(1.5)
    assert result.calls == 3 and len(meter.reads) == 2
    assert result.average_power_w == pytest.approx(470 / 1.7)
    assert result.energy_per_call_j == pytest.approx(470 / 1.7 * 0.5)
    info = window.extra_info(tokens_per_call=4)
    assert info["energy_per_token_j"] == pytest.approx(470 / 1.7 * 0.5 / 4)
    assert info["energy_meter"] == "fake meter" and info["energy_window_j"] == pytest.approx(470)


def test_a_window_shorter_than_the_counter_allows_is_no_measurement() -> None:
    meter, clock = FakeMeter(min_window_s=1.0), FakeClock()
    window = EnergyWindow(meter, warmup=0, rounds=3, clock=clock)
    _rounds(window, clock, meter, calls=3, call_s=0.01)
    info = window.extra_info(tokens_per_call=4)
    assert list(info) == ["energy_unavailable"]
    # 3 rounds of 0.01 s and 2 gaps of 0.1 s: 0.23 s; 1 s needs about 14 rounds of this length
    assert "lasted 0.230 s, under the 1.0 s" in info["energy_unavailable"]
    assert "raise --tbench-rounds to about 14" in info["energy_unavailable"]


def test_no_meter_and_a_failing_meter_are_reasons() -> None:
    window = EnergyWindow("no RAPL: /sys/class/powercap does not exist", 0, 2)
    work = Work(lambda: None, samples=1, tokens=1)
    assert window.wrap(work) is work
    assert window.extra_info(1) == {"energy_unavailable": "no RAPL: /sys/class/powercap does not exist"}

    class Failing(FakeMeter):
        def read(self) -> tuple[int, ...]:
            raise OSError("counter gone")

    clock = FakeClock()
    failing = EnergyWindow(Failing(), 0, 2, clock=clock)
    _rounds(failing, clock, FakeMeter(), calls=2, call_s=1.0)
    assert "fake meter failed to read: OSError: counter gone" in failing.extra_info(1)["energy_unavailable"]


def test_processes_windows_pool_into_one() -> None:
    first = EnergyMeasurement("m", 100.0, 2.0, 1.5, 3).extra_info(10)
    second = EnergyMeasurement("m", 300.0, 4.0, 3.5, 5).extra_info(10)
    pooled = pooled_energy([first, second], [3, 5], tokens_per_call=10)
    assert pooled["energy_window_j"] == 400 and pooled["average_power_w"] == pytest.approx(400 / 6)
    assert pooled["energy_per_call_j"] == pytest.approx(400 / 6 * 5.0 / 8)
    assert pooled_energy([first, {"energy_unavailable": "x"}], [3, 5], 10) == {}


def test_the_nvml_meter_reads_millijoules(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = {"GPU-abc": 5_000}
    module = types.ModuleType("pynvml")
    module.nvmlInit = lambda: None  # type: ignore[attr-defined]

    def by_uuid(uuid: str) -> str:
        if uuid not in counter:
            raise RuntimeError("Not Found")
        return uuid

    module.nvmlDeviceGetHandleByUUID = by_uuid  # type: ignore[attr-defined]
    module.nvmlDeviceGetTotalEnergyConsumption = lambda handle: counter[handle]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)

    read = nvml.energy_counter("abc")  # torch's spelling, without NVML's GPU- prefix
    assert callable(read)
    meter = NvmlEnergyMeter((read,), ("abc",))
    start = meter.read()
    counter["GPU-abc"] += 2_500
    assert meter.joules(start, meter.read()) == 2.5
    assert meter.min_window_s == 5.0 and "abc" in meter.name  # 50 sampling periods of an A100/H100
    assert nvml.energy_counter("zzz") == "NVML knows no GPU with UUID zzz"

    def not_supported(handle: str) -> int:
        raise RuntimeError("Not Supported")

    module.nvmlDeviceGetTotalEnergyConsumption = not_supported  # type: ignore[attr-defined]
    reason = nvml.energy_counter("abc")
    assert isinstance(reason, str) and "Volta or newer" in reason and "Not Supported" in reason


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = 262143328850) -> Path:
    path = root / zone
    path.mkdir()
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two packages with a core subzone, and psys (which would count the packages again)."""
    root = tmp_path / "powercap"
    root.mkdir()
    _zone(root, "intel-rapl:0", "package-0", 900, max_uj=1000)
    _zone(root, "intel-rapl:0:0", "core", 50)
    _zone(root, "intel-rapl:1", "psys", 10_000)
    _zone(root, "intel-rapl:2", "package-1", 5_000_000)
    return root


def test_rapl_sums_the_packages_across_a_wrap(powercap: Path) -> None:
    meter = rapl_meter(powercap)
    assert not isinstance(meter, str)
    assert [d.name for d in meter.domains] == ["package-0", "package-1"]
    assert "package-0+package-1" in meter.name and meter.min_window_s == 0.1
    start = meter.read()
    (powercap / "intel-rapl:0" / "energy_uj").write_text("100\n")  # wrapped past 1000 uJ: 200 uJ used
    (powercap / "intel-rapl:2" / "energy_uj").write_text("6000000\n")  # 1 J
    assert meter.joules(start, meter.read()) == pytest.approx(1.0002)


def test_unreadable_rapl_says_why(powercap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "does not exist" in str(rapl_meter(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert rapl_meter(empty) == f"no RAPL package domain under {empty}"

    read_text = Path.read_text

    def root_only(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    reason = rapl_meter(powercap)
    assert isinstance(reason, str) and "root only since Linux 5.10" in reason and "energy_uj" in reason


# --- an item end to end ---


@pytest.fixture
def limits_json(pytester: pytest.Pytester) -> Iterator[dict[str, Any]]:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result, data = run_json(
        pytester,
        *TINY,
        "--tbench-new-tokens",
        "3",
        "--tbench-peak-tflops",
        "2",
        "--tbench-peak-bandwidth",
        "50",
    )
    result.assert_outcomes(passed=3)
    yield {b["extra_info"]["mode"]: b for b in data["benchmarks"]}


def test_every_mode_records_how_close_it_came(limits_json: dict[str, Any]) -> None:
    for mode, bench in limits_json.items():
        info = bench["extra_info"]
        assert info["flops_method"] == "counted", mode
        assert info["achieved_tflops"] == pytest.approx(
            info["flops_per_call"] / bench["stats"]["median"] / 1e12
        )
        assert info["mfu"] == pytest.approx(info["achieved_tflops"] / 2)
        assert info["peak_tflops_source"] == "--tbench-peak-tflops"
        assert info["device_name"] and info["matmul_precision"] == "float32"
        if not os.access("/sys/class/powercap", os.R_OK):
            assert info["energy_unavailable"].startswith("no RAPL")
    forward, train, generate = (limits_json[m]["extra_info"] for m in ("forward", "train", "generate"))
    # tiny-gpt2 b1 s8 (d 64, vocab 1000, 2 layers): forward is the base model; the train step runs the LM head
    # model (the head's 2*T*d*V more) forward and backward, which counts two products for every forward
    # one, but for attention's backward, which recomputes the scores (2.5 for 1).
    lm_head = 2 * 8 * 64 * 1000
    attention = 2 * (4 * 1 * 8 * 8 * 64)
    three_forwards = 3 * (forward["flops_per_call"] + lm_head)
    assert three_forwards <= train["flops_per_call"] <= three_forwards + attention // 2
    # Prefill is a forward of the prompt, with logits at most for all of it.
    assert forward["flops_per_call"] < generate["prefill_flops"] <= forward["flops_per_call"] + lm_head
    assert generate["prefill_flops"] + generate["decode_flops"] == generate["flops_per_call"]
    read = generate["decode_weights_read_bytes"] + generate["decode_kv_read_bytes"]
    assert generate["decode_bandwidth_bytes_per_s"] == pytest.approx(
        read / generate["decode_token_latency_mean_s"]
    )
    assert generate["mbu"] == pytest.approx(generate["decode_bandwidth_bytes_per_s"] / 50e9)
    assert "mbu" not in forward and "decode_kv_read_bytes" not in train


def test_a_bad_peak_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--tbench-peak-tflops=-3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--tbench-peak-tflops: '-3' is outside (0.0, 1000000.0]" in result.stderr.str()
    config = pytester.path / "tbench.yaml"
    config.write_text(json.dumps({"peak_bandwidth": "fast"}))  # JSON is YAML
    result = pytester.runpytest("--tbench-config", str(config))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "peak_bandwidth: 'fast' is not a number" in result.stderr.str()


def test_the_ab_base_side_gets_its_own_limits_from_its_own_median() -> None:
    from pytest_tbench.core.measurement import Measurement
    from pytest_tbench.launch.base import Attempt
    from pytest_tbench.launch.retries import derived

    side = {"device": "cpu", "device_name": "x", "matmul_precision": "float32", "flops_per_call": 3e9}
    measured = Measurement.of(("item", {**side, "ab_base": {**side, "rounds_s": [0.02, 0.01, 0.03]}}))
    info = derived(Attempt(measured, 1, 8, [0.04, 0.04]), GivenPeaks(tflops=1.5))
    assert info["ab_base"]["achieved_tflops"] == pytest.approx(0.15)  # 3e9 FLOPs over its median, 20 ms
    assert info["ab_base"]["mfu"] == pytest.approx(0.1)
    assert info["achieved_tflops"] == pytest.approx(0.075)  # the current side's, over its own median, 40 ms
    assert measured["ab_base"].get("achieved_tflops") is None  # the measurement it was given is unchanged
    assert info.source("achieved_tflops") == "derived" and info.source("flops_per_call") == "item"
