"""Generate mode: exact token counts, TTFT + decode = total, options reaching generate, and the step timer."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import torch

from pytest_tbench.cases import BenchCase
from pytest_tbench.models.loading import ModelKey, load_model
from pytest_tbench.models.registry import resolve
from pytest_tbench.scenarios.generate import generate_metrics
from pytest_tbench.trackers import steps
from pytest_tbench.trackers.steps import RoundTiming, StepClock

from .conftest import TINY, run_json

GENERATE_BENCH = """
import pytest

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""

# Records the keyword arguments of every generate call, and can shorten the output to fake an early stop.
SPY_CONFTEST = """
import json, os
from transformers import GenerationMixin

_real = GenerationMixin.generate

def spy(self, *args, **kwargs):
    with open("generate_calls.jsonl", "a") as log:
        keep = {k: v for k, v in kwargs.items() if isinstance(v, (bool, int, float, str, type(None)))}
        log.write(json.dumps(keep) + "\\n")
    if os.environ.get("TBENCH_TEST_SHORTEN"):
        kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = kwargs["max_new_tokens"] - 1
    return _real(self, *args, **kwargs)

GenerationMixin.generate = spy

def pytest_unconfigure(config):  # pytester runs in this process: leave generate as it was
    GenerationMixin.generate = _real
"""

GEN = [*TINY, "--tbench-new-tokens", "5", "--tbench-rounds", "3", "--tbench-warmup", "1"]


@pytest.fixture
def generate_bench(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_bench=GENERATE_BENCH)
    return pytester


def _calls(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (pytester.path / "generate_calls.jsonl").read_text().splitlines()]


def test_exact_token_counts_and_metric_bases(generate_bench: pytest.Pytester) -> None:
    result, data = run_json(
        generate_bench, *GEN, "--tbench-models", "tiny-gpt2,tiny-t5", "--tbench-batch-sizes", "2"
    )
    result.assert_outcomes(passed=2)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        assert bench["name"].endswith("-b2-s8-n5-cpu-float32]")
        assert info["new_tokens"] == 5
        assert info["generated_tokens_per_round"] == 2 * 5
        assert info["decode_tokens_per_round"] == 2 * 4
        assert info["prefill_tokens_per_round"] == 2 * 8
        assert info["measured_rounds"] == len(bench["stats"]["data"]) == 3
        # 4 step intervals per measured round, and none from the warm-up round or from between calls.
        assert info["decode_token_latency_count"] == 3 * 4
    assert {b["extra_info"]["model_class"] for b in data["benchmarks"]} == {
        "GPT2LMHeadModel",
        "T5ForConditionalGeneration",
    }


def test_prefill_plus_decode_is_total(generate_bench: pytest.Pytester) -> None:
    result, data = run_json(generate_bench, *GEN, "--tbench-models", "tiny-llama")
    result.assert_outcomes(passed=1)
    bench = data["benchmarks"][0]
    info, stats = bench["extra_info"], bench["stats"]
    assert info["ttft_mean_s"] + info["decode_time_mean_s"] == pytest.approx(
        info["total_time_mean_s"], rel=1e-9
    )
    assert 0 < info["ttft_mean_s"] < info["total_time_mean_s"]
    # The in-call total and pytest-benchmark's own timer around the call measure the same thing.
    assert stats["mean"] == pytest.approx(info["total_time_mean_s"], rel=0.25, abs=0.005)
    decode_rate = info["decode_tokens_per_round"] / info["decode_time_mean_s"]
    assert info["decode_tokens_per_s"] == pytest.approx(decode_rate)
    assert info["e2e_tokens_per_s"] == pytest.approx(
        info["generated_tokens_per_round"] / info["total_time_mean_s"]
    )
    assert info["prefill_tokens_per_s"] == pytest.approx(
        info["prefill_tokens_per_round"] / info["ttft_mean_s"]
    )
    latencies = [info[f"decode_token_latency_{k}_s"] for k in ("median", "p90", "p99")]
    assert latencies == sorted(latencies)


def test_a_short_generation_fails_the_item_with_the_counts(
    generate_bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_bench.makeconftest(SPY_CONFTEST)
    monkeypatch.setenv("TBENCH_TEST_SHORTEN", "1")
    result = generate_bench.runpytest(*GEN, "--tbench-models", "tiny-gpt2,tiny-llama")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*tiny-gpt2: asked for 5 new tokens per row x batch 1, got output shape (1, 12)*"]
    )


def test_greedy_by_default_and_sampling_options_reach_generate(generate_bench: pytest.Pytester) -> None:
    generate_bench.makeconftest(SPY_CONFTEST)
    greedy = generate_bench.runpytest(*GEN)
    greedy.assert_outcomes(passed=1)
    calls = _calls(generate_bench)
    assert len(calls) == 1 + 3  # warm-up + measured rounds
    assert {(c["do_sample"], c["max_new_tokens"], c["min_new_tokens"], c["use_cache"]) for c in calls} == {
        (False, 5, 5, True)
    }
    assert "cache_implementation" not in calls[0]

    (generate_bench.path / "generate_calls.jsonl").unlink()
    sampled = generate_bench.runpytest(
        *GEN,
        "--tbench-temperature",
        "0.7",
        "--tbench-top-p",
        "0.9",
        "--tbench-cache-implementation",
        "static",
        "--tbench-use-cache",
        "true",
    )
    sampled.assert_outcomes(passed=1)
    call = _calls(generate_bench)[0]
    assert (call["do_sample"], call["temperature"], call["top_p"], call["cache_implementation"]) == (
        True,
        0.7,
        0.9,
        "static",
    )

    (generate_bench.path / "generate_calls.jsonl").unlink()
    generate_bench.runpytest(*GEN, "--tbench-use-cache", "false").assert_outcomes(passed=1)
    assert {c["use_cache"] for c in _calls(generate_bench)} == {False}


def test_generate_skips_encoder_only_and_too_long(generate_bench: pytest.Pytester) -> None:
    # tiny-gpt2 allows 256 positions: 250 + 10 new tokens do not fit.
    args = [
        "--tbench-models",
        "tiny-bert,tiny-gpt2",
        "--tbench-seq-lens",
        "8,250",
        "--tbench-new-tokens",
        "10",
    ]
    result = generate_bench.runpytest(*TINY, *args, "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*tiny-bert (bert) is encoder-only: it has no generate*"])
    result.stdout.fnmatch_lines(
        ["*input length 250 + 10 new tokens exceeds tiny-gpt2's max positions (256)*"]
    )


def test_step_timer_agrees_with_a_manual_prefill_and_decode_loop(generate_bench: pytest.Pytester) -> None:
    # Prefill of 4 x 256 tokens against 4 tokens a step: model time, not Python overhead, decides.
    args = ["--tbench-models", "gpt2-mid", "--tbench-batch-sizes", "4", "--tbench-seq-lens", "256"]
    result, data = run_json(generate_bench, *GEN, *args, "--tbench-new-tokens", "8")
    result.assert_outcomes(passed=1)
    info = data["benchmarks"][0]["extra_info"]

    loaded = load_model(resolve("gpt2-mid"), ModelKey("gpt2-mid", "lm", "cpu", "float32"))
    model = loaded.model
    ids = torch.randint(0, 4000, (4, 256))
    prefills, step_times = [], []
    with torch.inference_mode():
        for _ in range(4):
            start = time.perf_counter()
            # As generate does: logits for the last position only.
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            prefills.append(time.perf_counter() - start)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(7):
                start = time.perf_counter()
                out = model(input_ids=token, past_key_values=past, use_cache=True)
                step_times.append(time.perf_counter() - start)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    manual_prefill, manual_step = statistics.median(prefills[1:]), statistics.median(step_times)

    assert (info["ttft_mean_s"] > info["decode_token_latency_median_s"]) == (manual_prefill > manual_step)
    assert 0.5 < info["ttft_median_s"] / manual_prefill < 2.0
    assert 0.5 < info["decode_token_latency_median_s"] / manual_step < 2.5


def test_metrics_arithmetic_on_known_rounds() -> None:
    case = BenchCase(
        "generate", "m", "lm", batch_size=2, seq_len=10, device="cpu", dtype="float32", new_tokens=3
    )
    rounds = [
        RoundTiming(first_step_s=0.10, step_intervals_s=(0.02, 0.04), total_s=0.17, steps=3),
        RoundTiming(first_step_s=0.20, step_intervals_s=(0.03, 0.05), total_s=0.29, steps=3),
    ]
    info = generate_metrics(case, rounds)
    assert info["ttft_mean_s"] == pytest.approx(0.15)
    assert info["decode_time_mean_s"] == pytest.approx(0.08)
    assert info["total_time_mean_s"] == pytest.approx(0.23)
    assert info["decode_token_latency_count"] == 4
    assert info["decode_token_latency_mean_s"] == pytest.approx(0.035)
    assert info["decode_tokens_per_s"] == pytest.approx(2 * 2 / 0.08)
    assert info["prefill_tokens_per_s"] == pytest.approx(2 * 10 / 0.15)
    assert info["e2e_tokens_per_s"] == pytest.approx(2 * 3 / 0.23)


class _FakeEvent:
    """torch.cuda.Event stand-in: records host time, answers elapsed_time in milliseconds."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, other: _FakeEvent) -> float:
        return (other.at - self.at) * 1000


def test_cuda_step_clock_uses_events_and_converts_to_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps.torch.cuda, "Event", _FakeEvent)
    clock = StepClock("cuda:0")
    for pause in (0.0, 0.03, 0.01, 0.02):
        time.sleep(pause)
        clock.stamp()
    timing = clock.timing()
    assert all(isinstance(s, _FakeEvent) for s in clock._stamps)
    assert timing.steps == 2
    assert timing.first_step_s == pytest.approx(0.03, abs=0.015)
    assert timing.step_intervals_s[0] == pytest.approx(0.01, abs=0.015)
    assert timing.total_s == pytest.approx(0.06, abs=0.02)
