"""Train mode: a real optimizer step per round, heads that make a loss, and no state left between items."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch

from pytest_tbench.measure.work import Work
from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.models.loading import TORCH_DTYPES, ModelCache, ModelKey, load_model
from pytest_tbench.models.registry import resolve
from pytest_tbench.scenarios import train
from pytest_tbench.scenarios.train import TrainingDiverged, TrainWork
from pytest_tbench.settings.cases import BenchCase

from .conftest import MID_CONFTEST, TINY, run_json

# In the suite's parallel part: memory and counts, no timing (an item's memory is its own process's, which
# no other test's load moves).

TRAIN_BENCH = """
import pytest

@pytest.mark.tbench(mode="train")
def test_train(tbench):
    tbench.train()
"""


@pytest.fixture
def train_bench(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_bench=TRAIN_BENCH)
    return pytester


def test_one_step_per_round_changes_the_weights() -> None:
    loaded = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", "float32", train=True))
    case = BenchCase("train", "tiny-gpt2", "lm", 2, 16, "cpu", "float32")
    before = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    work = TrainWork(loaded, case, "adamw")
    for _ in range(3):
        work.before_round()
        work.call()
        work.after_round()
    info = work.metrics(0)
    assert info["train_steps"] == 3
    changed = [name for name, p in loaded.model.named_parameters() if not torch.equal(p, before[name])]
    assert len(changed) == len(before), "every trainable parameter moves under AdamW"
    # AdamW keeps two moments per parameter, as big as the parameters themselves.
    assert info["optimizer_state_bytes"] >= 2 * loaded.parameter_bytes
    work.cleanup()
    assert not loaded.model.training
    assert all(p.grad is None for p in loaded.model.parameters())


def test_optimizer_none_runs_backward_only() -> None:
    loaded = load_model(resolve("tiny-bert"), ModelKey("tiny-bert", "lm", "cpu", "float32", train=True))
    before = [p.detach().clone() for p in loaded.model.parameters()]
    work = TrainWork(loaded, BenchCase("train", "tiny-bert", "lm", 1, 8, "cpu", "float32"), "none")
    work.call()
    assert all(torch.equal(a, b) for a, b in zip(before, loaded.model.parameters(), strict=True))
    assert work.metrics(0)["optimizer_state_bytes"] == 0


def test_train_items_record_step_time_and_memory_split(train_bench: pytest.Pytester) -> None:
    result, data = run_json(train_bench, *TINY, "--tbench-models", "tiny-gpt2,tiny-t5,tiny-bert")
    result.assert_outcomes(passed=3)
    classes = {b["extra_info"]["model"]: b["extra_info"]["model_class"] for b in data["benchmarks"]}
    assert classes == {
        "tiny-gpt2": "GPT2LMHeadModel",
        "tiny-t5": "T5ForConditionalGeneration",
        "tiny-bert": "BertForMaskedLM",
    }
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        assert info["train_steps"] == info["rounds"] + info["warmup_rounds"] == 2
        assert info["gradient_bytes"] == info["parameter_bytes"]
        # AdamW: two moments as big as the parameters, plus a small step counter per parameter tensor.
        assert 2 * info["parameter_bytes"] <= info["optimizer_state_bytes"] < 2.01 * info["parameter_bytes"]
        assert info["throughput_tokens_per_s"] == pytest.approx(8 / bench["stats"]["median"])
        assert info["last_loss"] > 0


def test_train_model_is_not_shared_with_inference(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench=TRAIN_BENCH
        + """
@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""
    )
    result, data = run_json(pytester, *TINY, "--tbench-new-tokens", "2")
    result.assert_outcomes(passed=2)
    # Separate loads: the generate item's model never saw an optimizer step.
    loads = {b["extra_info"]["mode"]: b["extra_info"]["model_load_time_s"] for b in data["benchmarks"]}
    assert loads["train"] != loads["generate"]


@pytest.mark.parametrize(("launcher", "tolerance"), [("--tbench-isolate", 0.05), ("-q", 0.2)])
def test_memory_of_an_item_does_not_depend_on_the_items_before_it(
    pytester: pytest.Pytester, launcher: str, tolerance: float
) -> None:
    # The same small train item before and after a big one. Isolated, each item has a process of its own and
    # the two agree within a few percent here (0.1% to 3.3% seen). In-process, grads, optimizer state and
    # caches are released between items, but CPU RSS keeps the heap layout earlier items left: measured here,
    # the same item varies by up to 15%; an item that inherited the optimizer state of one before it would be
    # about 40% off.
    # A first small item takes the process' one-time costs (allocator arenas, kernel caches).
    pytester.makeconftest(MID_CONFTEST)
    pytester.makepyfile(test_a_warm=TRAIN_BENCH, test_b_before=TRAIN_BENCH, test_c_after=TRAIN_BENCH)
    args = ["--tbench-models", "gpt2-mid", "--tbench-batch-sizes", "2,16", "--tbench-seq-lens", "128"]
    only = ["-k", "not (warm and b16) and not (after and b16)"]
    # A fresh pytest process: the heap history is this session's items alone, not the whole test suite's.
    result, data = run_json(pytester, *TINY, *args, *only, launcher, subprocess=True)
    result.assert_outcomes(passed=4)
    order = [(b["fullname"].split(".py")[0], b["extra_info"]["batch_size"]) for b in data["benchmarks"]]
    assert order == [("test_a_warm", 2), ("test_b_before", 2), ("test_b_before", 16), ("test_c_after", 2)]
    before, big, after = (b["extra_info"]["peak_memory_increase_bytes"] for b in data["benchmarks"][1:])
    assert after == pytest.approx(before, rel=tolerance)
    assert big > 2 * before


# --- Mixed precision (issue 11, finding 2) ----------------------------------------------------------------


def test_train_copies_in_half_precision_hold_float32_master_weights() -> None:
    resolved = resolve("tiny-gpt2")
    for dtype in ("float16", "bfloat16"):
        train = load_model(resolved, ModelKey("tiny-gpt2", "lm", "cpu", dtype, train=True))
        assert {p.dtype for p in train.model.parameters()} == {torch.float32}
        assert train.parameter_bytes == 4 * train.num_parameters  # what the item really holds
        # Inference copies are untouched: forward and generate run in the case's dtype itself.
        infer = load_model(resolved, ModelKey("tiny-gpt2", "lm", "cpu", dtype))
        assert {p.dtype for p in infer.model.parameters()} == {TORCH_DTYPES[dtype]}


def _run_rounds(work: Work, rounds: int) -> None:
    for _ in range(rounds):
        work.before_round()
        work.call()
        work.after_round()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_steps_stay_finite_and_train(dtype: str) -> None:
    # Pure float16 AdamW at lr 1e-5 (the old train mode) gave losses 6.9, nan, nan here.
    loaded = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", dtype, train=True))
    work = TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 2, 16, "cpu", dtype), "adamw")
    _run_rounds(work, 3)
    info = work.metrics(1)
    assert info["train_precision"] == f"amp-{dtype}"
    assert math.isfinite(info["last_loss"])
    assert info["weights_changed"] and info["changed_tensors_fraction"] == 1.0
    assert ("amp_skipped_steps" in info) == (dtype == "float16")  # bfloat16 needs no loss scaling
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    work.cleanup()


def test_float32_training_has_no_autocast_and_no_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("float32 training must run as before: no autocast, no GradScaler")

    monkeypatch.setattr(torch, "autocast", forbidden)
    monkeypatch.setattr(torch.amp, "GradScaler", forbidden)
    loaded = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", "float32", train=True))
    work = TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cpu", "float32"), "adamw")
    _run_rounds(work, 1)
    info = work.metrics(0)
    assert info["train_precision"] == "float32" and "amp_skipped_steps" not in info


def test_a_half_precision_model_is_refused_as_master_weights() -> None:
    loaded = load_model(
        resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", "float16")
    )  # not a train copy
    with pytest.raises(ValueError, match=r"needs float32 master weights.*train=True"):
        TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cpu", "float16"), "adamw")


class _FakeScaler:
    """Stands in for ``torch.amp.GradScaler`` on a "cuda" case: records the calls, skips the first step as
    an overflowing one would (scale halved), then steps for real."""

    made: ClassVar[list[_FakeScaler]] = []

    def __init__(self, device: str) -> None:
        self.device = device
        self.calls: list[str] = []
        self.scale_value = 65536.0
        _FakeScaler.made.append(self)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        self.calls.append("scale")
        return loss

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.calls.append("step")
        if self.calls.count("step") > 1:
            optimizer.step()

    def update(self) -> None:
        self.calls.append("update")
        if self.calls.count("update") == 1:
            self.scale_value /= 2

    def get_scale(self) -> float:
        return self.scale_value


def test_cuda_float16_step_autocasts_and_scales_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA cannot run here: the case says cuda:0 while tensors stay on the CPU, and autocast and GradScaler
    # are fakes that record the device type and dtype they are given and the order of the calls.
    autocasts: list[tuple[str, torch.dtype]] = []

    @contextlib.contextmanager
    def fake_autocast(device_type: str, dtype: torch.dtype) -> Iterator[None]:
        autocasts.append((device_type, dtype))
        yield

    _FakeScaler.made.clear()
    monkeypatch.setattr(torch, "autocast", fake_autocast)
    monkeypatch.setattr(torch.amp, "GradScaler", _FakeScaler)
    monkeypatch.setattr(train, "make_inputs", lambda config, b, s, device: make_inputs(config, b, s, "cpu"))
    loaded = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", "float16", train=True))
    work = TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cuda:0", "float16"), "adamw")
    _run_rounds(work, 3)
    info = work.metrics(0)
    (scaler,) = _FakeScaler.made
    assert scaler.device == "cuda"
    assert autocasts == [("cuda", torch.float16)] * 3
    assert scaler.calls == ["scale", "step", "update"] * 3
    assert info["amp_skipped_steps"] == 1
    assert info["weights_changed"]  # judged over all steps: the skipped first one did not hide the rest


def test_a_non_finite_measured_loss_fails_as_diverged() -> None:
    loaded = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "lm", "cpu", "float32", train=True))
    work = TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cpu", "float32"), "none")
    weight = loaded.model.transformer.wte.weight
    kept = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(float("nan"))
    _run_rounds(work, 1)  # a NaN loss in warm-up ...
    with torch.no_grad():
        weight.copy_(kept)
    _run_rounds(work, 1)  # ... and a finite measured one: warm-up is not judged
    assert math.isfinite(work.metrics(1)["last_loss"])
    with pytest.raises(TrainingDiverged, match=r"training diverged: .* measured step 1 of 2 has loss nan"):
        work.metrics(0)


@pytest.mark.parametrize(("flag", "steps"), [("-q", 2), ("--benchmark-disable", 1)])
def test_a_diverged_item_fails(pytester: pytest.Pytester, flag: str, steps: int) -> None:
    # --benchmark-disable: pytest-benchmark makes one bare call, without the untimed hook after it.
    pytester.makepyfile(
        test_bench="""
import pytest
import torch

@pytest.mark.tbench(mode="train")
def test_train(tbench):
    with torch.no_grad():
        next(tbench.model.parameters()).fill_(float("nan"))
    tbench.train()
"""
    )
    result, _ = run_json(pytester, *TINY, flag)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*training diverged: tiny-gpt2-b1-s8-cpu-float32 measured step 1 of {steps}*"]
    )


@pytest.mark.parametrize(
    ("dtype", "launcher"), [("float16", "-q"), ("bfloat16", "-q"), ("float16", "--tbench-isolate")]
)
def test_half_precision_items_train(train_bench: pytest.Pytester, dtype: str, launcher: str) -> None:
    result, data = run_json(
        train_bench, *TINY, "--tbench-models", "tiny-gpt2,tiny-llama", "--tbench-dtype", dtype, launcher
    )
    result.assert_outcomes(passed=2)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        assert math.isfinite(info["last_loss"])  # pure float16 AdamW (the old train mode): nan
        assert info["dtype"] == dtype and info["train_precision"] == f"amp-{dtype}"
        assert info["weights_changed"]
        assert info["parameter_bytes"] == 4 * info["num_parameters"] == info["gradient_bytes"]
    result.stdout.fnmatch_lines([f"*tiny-gpt2*{dtype}*amp-{dtype}*"])  # the summary table's column


def test_train_items_of_one_model_start_from_the_same_weights(pytester: pytest.Pytester) -> None:
    # Two train items of one model in one process: the second must not start from the first one's trained
    # weights (it gets a fresh load; the trained copy is released first).
    pytester.makepyfile(
        test_bench="""
import pytest
import torch

STARTS = []

@pytest.mark.tbench(mode="train")
@pytest.mark.parametrize("repeat", [1, 2])
def test_train(tbench, repeat):
    STARTS.append([p.detach().clone() for p in tbench.model.parameters()])
    tbench.train()
    assert all(torch.equal(a, b) for a, b in zip(STARTS[0], STARTS[-1], strict=True))
"""
    )
    result, data = run_json(pytester, *TINY)
    result.assert_outcomes(passed=2)
    first, second = (b["extra_info"]["last_loss"] for b in data["benchmarks"])
    assert first == second  # same start, same seeded inputs: the same step


def test_model_cache_loads_afresh_after_a_train_item() -> None:
    cache = ModelCache({})
    key = ModelKey("tiny-gpt2", "lm", "cpu", "float32", train=True)
    loaded = cache.get(key)
    assert cache.get(key) is loaded  # untrained: shared as before
    start = [p.detach().clone() for p in loaded.model.parameters()]
    work = TrainWork(loaded, BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cpu", "float32"), "adamw")
    _run_rounds(work, 1)
    work.cleanup()
    fresh = cache.get(key)
    assert fresh is not loaded and not fresh.trained
    assert all(torch.equal(a, b) for a, b in zip(start, fresh.model.parameters(), strict=True))
    cache.release_all()
