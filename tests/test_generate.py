"""Generate mode: exact token counts, TTFT + decode = total, options reaching generate, and the step timer."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any, cast

import pytest
import torch
from transformers import GenerationMixin

from pytest_tbench.measure.trackers import steps
from pytest_tbench.measure.trackers.compiles import GENERATE_STATE_ATTRS
from pytest_tbench.measure.trackers.steps import RoundTiming, StepClock
from pytest_tbench.measure.work import Work
from pytest_tbench.models.loading import LoadedModel, ModelKey, load_model
from pytest_tbench.models.registry import resolve
from pytest_tbench.scenarios.generate import (
    GenerateRound,
    GenerateWork,
    MeasuredCompileError,
    generate_metrics,
)
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.generate import GenerateSettings

from .conftest import TINY, run_json

# The tests that compare timings (marked) run alone, after the parallel part of the suite (README: the test
# command); the rest check counts, settings and failures, which no load moves.
timing = pytest.mark.timing

GENERATE_BENCH = """
import pytest

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""

# Records the generation config of every generate call, and can shorten the output to fake an early stop.
SPY_CONFTEST = """
import copy, json, os
from transformers import GenerationMixin

_real = GenerationMixin.generate

def spy(self, *args, **kwargs):
    config = kwargs["generation_config"]
    with open("generate_calls.jsonl", "a") as log:
        values = {**config.to_dict(), **kwargs}
        keep = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
        log.write(json.dumps(keep) + "\\n")
    if os.environ.get("TBENCH_TEST_SHORTEN"):
        config = kwargs["generation_config"] = copy.deepcopy(config)
        config.max_new_tokens = config.min_new_tokens = config.max_new_tokens - 1
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


@timing
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
    # warm-up + measured rounds + the untimed FLOP count, which runs the same request
    assert len(calls) == 1 + 3 + 1
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


@timing
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
    info = generate_metrics(case, [GenerateRound(r) for r in rounds])
    assert (info["generate_compiled"], info["generate_recompiles_measured"]) == (False, 0)
    assert info["ttft_mean_s"] == pytest.approx(0.15)
    assert info["decode_time_mean_s"] == pytest.approx(0.08)
    assert info["total_time_mean_s"] == pytest.approx(0.23)
    assert info["decode_token_latency_count"] == 4
    assert info["decode_token_latency_mean_s"] == pytest.approx(0.035)
    assert info["decode_tokens_per_s"] == pytest.approx(2 * 2 / 0.08)
    assert info["prefill_tokens_per_s"] == pytest.approx(2 * 10 / 0.15)
    assert info["e2e_tokens_per_s"] == pytest.approx(2 * 3 / 0.23)


def test_half_compiled_measured_rounds_fail() -> None:
    timing = RoundTiming(first_step_s=0.1, step_intervals_s=(0.02,), total_s=0.12, steps=2)
    case = _case(new_tokens=2)
    with pytest.raises(MeasuredCompileError, match=r"compiled decode step in 1 of 2 measured rounds"):
        generate_metrics(case, [GenerateRound(timing, compiled=True), GenerateRound(timing, compiled=False)])
    with pytest.raises(MeasuredCompileError, match=r"dynamo compiled 3 frame\(s\).*per round: \[0, 3\]"):
        generate_metrics(case, [GenerateRound(timing, True), GenerateRound(timing, True, compiles=3)])


class _FakeStream:
    def __init__(self, device: torch.device) -> None:
        self.device = device


class _FakeEvent:
    """torch.cuda.Event stand-in: records host time and the stream, answers elapsed_time in milliseconds."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0
        self.stream: _FakeStream | None = None

    def record(self, stream: _FakeStream | None = None) -> None:
        self.at = time.perf_counter()
        self.stream = stream

    def elapsed_time(self, other: _FakeEvent) -> float:
        return (other.at - self.at) * 1000


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[torch.device]:
    """Fake events and streams; returns the devices whose current stream was asked for. Making a device
    current (or asking which is) fails the test: the clock must not touch GPU 0 for an item on another GPU."""
    asked: list[torch.device] = []

    def current_stream(device: torch.device | None = None) -> _FakeStream:
        assert isinstance(device, torch.device), f"current_stream needs the item's device, got {device!r}"
        asked.append(device)
        return _FakeStream(device)

    def touches_device_0(*args: object) -> None:
        raise AssertionError("the step clock set or read the current CUDA device")

    monkeypatch.setattr(steps.torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(steps.torch.cuda, "current_stream", current_stream)
    monkeypatch.setattr(steps.torch.cuda, "set_device", touches_device_0)
    monkeypatch.setattr(steps.torch.cuda, "current_device", touches_device_0)
    return asked


def test_cuda_step_clock_uses_events_and_converts_to_seconds(fake_cuda: list[torch.device]) -> None:
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


def test_cuda_step_clock_stamps_on_the_items_device_stream(fake_cuda: list[torch.device]) -> None:
    # A bare Event.record() lands on the current device's stream (GPU 0): for an item on cuda:1 that times the
    # launch, not the work, and opens a context on GPU 0.
    clock = StepClock("cuda:1")
    for _ in range(3):
        clock.stamp()
    assert fake_cuda == [torch.device("cuda:1")]
    streams = [cast(_FakeEvent, e).stream for e in clock._stamps]
    assert all(s is not None and s.device == torch.device("cuda:1") for s in streams), streams


# Unit-level generate items: the work's hooks called as the runner calls them, on a model at hand.


def _case(new_tokens: int = 6, batch_size: int = 1) -> BenchCase:
    return BenchCase(
        "generate",
        "tiny-gpt2",
        "lm",
        batch_size=batch_size,
        seq_len=8,
        device="cpu",
        dtype="float32",
        new_tokens=new_tokens,
    )


def _loaded(spec: str = "tiny-gpt2") -> LoadedModel:
    return load_model(resolve(spec), ModelKey(spec, "lm", "cpu", "float32"))


def _run(work: Work, rounds: int, warmup: int = 0) -> dict[str, Any]:
    try:
        for _ in range(warmup + rounds):
            work.before_round()
            work.call()
            work.after_round()
        return work.metrics(warmup)
    finally:
        work.cleanup()


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, output) of every generate call."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = GenerationMixin.generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = real(self, *args, **kwargs)
        calls.append((kwargs["input_ids"], output))
        return output

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    return calls


def test_greedy_ignores_the_checkpoints_generation_defaults(
    generate_calls: list[tuple[torch.Tensor, torch.Tensor]],
) -> None:
    loaded = _loaded()
    model = cast(Any, loaded.model)
    own = model.generation_config
    own.num_beams, own.repetition_penalty, own.no_repeat_ngram_size = 4, 2.0, 2
    info = _run(GenerateWork(loaded, _case(), GenerateSettings(new_tokens=6)), rounds=1)

    ((prompt, output),) = generate_calls
    expected = prompt
    with torch.inference_mode():  # plain greedy: the argmax of the full forward, token after token
        for _ in range(6):
            expected = torch.cat([expected, model(expected).logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
    assert output.tolist() == expected.tolist()
    recorded = info["generation_config"]
    assert (recorded["num_beams"], recorded["do_sample"], recorded["max_new_tokens"]) == (1, False, 6)
    assert "repetition_penalty" not in recorded and "no_repeat_ngram_size" not in recorded
    json.dumps(recorded)  # travels in extra_info
    # The model's own config is back once the item is over, untouched.
    assert model.generation_config is own and own.num_beams == 4


def test_sampling_records_every_value_that_chooses_tokens() -> None:
    settings = GenerateSettings(new_tokens=3, temperature=0.7)
    values = settings.generation_values(_loaded().config, None)
    assert {k: values[k] for k in ("do_sample", "temperature", "top_p", "top_k", "num_beams")} == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 0,
        "num_beams": 1,
    }
    t5 = _loaded("tiny-t5").config
    assert GenerateSettings(new_tokens=3).generation_values(t5, None)["decoder_start_token_id"] == 0


def test_each_step_stamp_comes_after_its_token_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sampling: top-p sorting and the draw belong to the step whose token they make, so a step's stamp must
    # follow the draw of its token. Each stamp records how many tokens had been drawn by then.
    drawn: list[int] = [0]
    seen: list[int] = []
    real_multinomial, real_stamp = torch.multinomial, StepClock.stamp

    def multinomial(*args: Any, **kwargs: Any) -> torch.Tensor:
        drawn[0] += 1
        return real_multinomial(*args, **kwargs)

    def stamp(self: StepClock) -> None:
        seen.append(drawn[0])
        real_stamp(self)

    monkeypatch.setattr(torch, "multinomial", multinomial)
    monkeypatch.setattr(StepClock, "stamp", stamp)
    _run(GenerateWork(_loaded(), _case(new_tokens=4), GenerateSettings(4, top_p=0.9)), rounds=1)
    assert seen == [0, 1, 2, 3, 4, 4]  # start, one per token once drawn, end


def test_static_cache_state_does_not_outlive_the_item() -> None:
    # generate keeps the longest static cache length on the model: a later, shorter item would attend over it.
    loaded = _loaded()
    model = cast(Any, loaded.model)
    settings = GenerateSettings(new_tokens=3, cache_implementation="static")
    info = _run(GenerateWork(loaded, _case(new_tokens=3), settings), rounds=1)
    leftovers = set(vars(model)) & {*GENERATE_STATE_ATTRS, "_valid_auto_compile_criteria"}
    assert not leftovers
    assert info["generate_compiled"] is False  # CPU: transformers compiles on CUDA only
    assert info["generation_config"]["cache_implementation"] == "static"


# transformers' compiled decode step, faked: its criterion says yes on CPU, and the "compiled" call is the
# model's own call that counts one dynamo frame compile the first time (so no 20 s CPU compile here).
FAKE_COMPILE_CONFTEST = """
from torch._dynamo.utils import counters
from transformers import GenerationMixin, PreTrainedModel

_criterion, _compiled = GenerationMixin._valid_auto_compile_criteria, PreTrainedModel.get_compiled_call

def always(self, model_kwargs, generation_config):
    return True

def compiled_call(self, compile_config):
    if not hasattr(self, "_compiled_call"):
        counters["frames"]["total"] += 1
        self._compiled_call = self.__call__
    return self._compiled_call

GenerationMixin._valid_auto_compile_criteria = always
PreTrainedModel.get_compiled_call = compiled_call

def pytest_unconfigure(config):
    GenerationMixin._valid_auto_compile_criteria = _criterion
    PreTrainedModel.get_compiled_call = _compiled
"""


def test_compiled_generate_is_recorded_and_its_state_released(
    generate_bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    resets: list[bool] = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(True))
    generate_bench.makeconftest(FAKE_COMPILE_CONFTEST)
    result, data = run_json(generate_bench, *GEN, "--tbench-cache-implementation", "static")
    result.assert_outcomes(passed=1)
    info = data["benchmarks"][0]["extra_info"]
    assert (info["generate_compiled"], info["generate_compiles_warmup"]) == (True, 1)
    assert info["generate_recompiles_measured"] == 0
    assert resets == [True]  # once, at the item's end


def test_compiling_inside_the_measured_rounds_fails_the_item(
    generate_bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)
    generate_bench.makeconftest(FAKE_COMPILE_CONFTEST)
    result = generate_bench.runpytest(*GEN, "--tbench-warmup", "0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*tiny-gpt2: dynamo compiled 1 frame(s) during the measured rounds (per round: ?1, 0, 0?)*"]
    )
    result.stdout.fnmatch_lines(["*raise --tbench-warmup*"])
