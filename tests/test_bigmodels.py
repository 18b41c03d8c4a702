"""Models larger than one GPU: --tbench-device-map (synchronisation over every GPU the model touches, memory
per GPU, the fit check over all GPUs) and --tbench-tp (ranks merged into one item). The CUDA paths run on
fakes here; one real 2-rank gloo tensor-parallel item runs on the CPU."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.launch.torchrun import merge_ranks
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.measure import rounds as rounds_module
from pytest_tbench.measure.rounds import RoundBody
from pytest_tbench.measure.trackers import memory as memory_module
from pytest_tbench.measure.work import Work
from pytest_tbench.models import fit, placement
from pytest_tbench.models.loading import ModelKey, load_model
from pytest_tbench.models.placement import (
    model_devices,
    placement_summary,
    spread_unsupported_reason,
)
from pytest_tbench.models.registry import resolve
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.options import parse_device_maps, parse_tp

from .conftest import TINY, run_json


class _Mapped(torch.nn.Module):
    """A model as accelerate's dispatch leaves it: ``hf_device_map`` from module names to devices."""

    def __init__(self, device_map: dict[str, Any]) -> None:
        super().__init__()
        self.hf_device_map = device_map


DEVICE_MAP = {
    "embed": 0,
    "layers.0": 0,
    "layers.1": 1,
    "layers.2": 1,
    "norm": 1,
    "lm_head": "cpu",
    "x": "disk",
}


def test_placement_summary_and_devices_of_a_device_map() -> None:
    model = _Mapped(DEVICE_MAP)
    assert placement_summary(model) == {"cuda:0": 2, "cuda:1": 3, "cpu": 1, "disk": 1}
    # Offloaded-to-disk weights run nowhere; GPUs come first, in ordinal order.
    assert model_devices(model, "cuda") == ("cuda:0", "cuda:1", "cpu")


def test_devices_of_a_model_without_a_map_are_its_parameters() -> None:
    assert model_devices(torch.nn.Linear(2, 2), "cuda:3") == ("cpu",)
    assert model_devices(torch.nn.Module(), "cuda:3") == ("cuda:3",)
    assert placement_summary(torch.nn.Linear(2, 2)) == {}


def test_every_round_synchronises_every_gpu_the_model_touches(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(rounds_module, "synchronize", lambda device: events.append(f"sync {device}"))
    work = Work(
        lambda: events.append("call"),
        samples=1,
        tokens=0,
        before_round=lambda: events.append("before"),
        after_round=lambda: events.append("after"),
    )
    body = RoundBody(work, "cuda", ("cuda:0", "cuda:1", "cuda:2"))
    body.whole()
    syncs = ["sync cuda:0", "sync cuda:1", "sync cuda:2"]
    # Idle on every GPU before the round; the timed call ends only when the last GPU is done.
    assert events == [*syncs, "before", "call", *syncs, "after"]
    events.clear()
    RoundBody(work, "cuda:1").timed()  # a model on one device: that device alone
    assert events == ["call", "sync cuda:1"]


class _FakeCuda:
    """CudaTracker's interface with fixed figures per GPU."""

    figures: ClassVar[dict[str, tuple[int, int]]] = {
        "cuda:0": (100, 900),
        "cuda:1": (50, 700),
    }  # allocated at start, peak allocated

    def __init__(self, device: str) -> None:
        self.device = device

    def start(self) -> None:
        pass

    def stop(self) -> dict[str, Any]:
        start, peak = self.figures[self.device]
        return {
            "cuda_device_uuid": f"uuid-{self.device}",
            "cuda_max_allocated_bytes": peak,
            "cuda_max_reserved_bytes": peak + 10,
            "cuda_allocated_at_start_bytes": start,
            "cuda_reserved_at_start_bytes": start + 10,
            "nvml_device_used_bytes": None if self.device == "cuda:1" else 5,
            "nvml_process_used_at_start_bytes": 1,
            "nvml_process_used_at_end_bytes": 3,
            "nvml_unavailable_reason": "no NVML" if self.device == "cuda:1" else None,
        }


def test_memory_per_gpu_and_its_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "CudaTracker", _FakeCuda)
    with memory_module.memory_tracker("cuda", devices=("cuda:0", "cuda:1", "cpu")) as info:
        pass
    assert info["peak_memory_per_device_bytes"] == {
        "cuda:0": 900,
        "cuda:1": 700,
        "cpu": info["peak_rss_bytes"],
    }
    # The item's peak is the sum of each GPU's peak; its increase is over the sum at the start.
    assert info["peak_memory_bytes"] == 1600
    assert info["peak_memory_increase_bytes"] == 1600 - 150
    assert info["peak_memory_kind"] == "cuda_max_allocated"
    assert info["cuda_max_reserved_bytes"] == 1620
    assert info["cuda_device_uuids"] == ["uuid-cuda:0", "uuid-cuda:1"]
    # One GPU's unknown figure makes the sum unknown, never a partial sum.
    assert info["nvml_device_used_bytes"] is None
    assert info["nvml_process_used_at_end_bytes"] == 6
    assert info["nvml_unavailable_reason"] == "no NVML"


def test_a_model_on_one_gpu_keeps_its_own_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "CudaTracker", _FakeCuda)
    with memory_module.memory_tracker("cuda:1") as info:
        pass
    assert info["peak_memory_bytes"] == 700
    assert "peak_memory_per_device_bytes" not in info


def test_fit_check_of_a_device_map_counts_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    free = {0: 10, 1: 20, 2: 30}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free[index], 100))
    assert fit.free_memory("cuda:1", in_this_process=True) == (20, "cudaMemGetInfo")
    total, source = fit.free_memory("cuda", in_this_process=True, every_gpu=True)
    assert total == 60
    assert "3 visible GPUs" in source


def test_device_map_auto_loads_a_tiny_model_with_accelerate_on_cpu() -> None:
    """A real device_map="auto" load (accelerate's dispatch): with no GPU everything lands on the CPU."""
    key = ModelKey("tiny-gpt2", "causal-lm", "cpu", "float32", device_map="auto")
    loaded = load_model(resolve("tiny-gpt2"), key)
    # Without a GPU accelerate has only the CPU to place on (with one, "auto" would use it).
    assert loaded.devices == (("cuda:0",) if torch.cuda.is_available() else ("cpu",))
    # Same seeded weights as the plain load: the random model went through save_pretrained unchanged.
    plain = load_model(resolve("tiny-gpt2"), ModelKey("tiny-gpt2", "causal-lm", "cpu", "float32"))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        spread = loaded.model(ids.to(loaded.devices[0])).logits.cpu()
        torch.testing.assert_close(spread, plain.model(ids).logits)


def test_spread_items_that_cannot_run_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    llama, gpt2 = LlamaConfig(), GPT2Config()

    def reason(
        device: str, device_map: str = "none", tp: str = "1", spec: str = "m", config: Any = llama
    ) -> str:
        found = spread_unsupported_reason(spec, config, device, device_map, tp, "none", "pytorch")
        assert found is not None
        return found

    assert "--tbench-devices cuda" in reason("cpu", device_map="auto")
    assert "exclusive" in reason("cuda", device_map="auto", tp="2")
    monkeypatch.setattr(placement.importlib.util, "find_spec", lambda name: None)
    assert "pytest-tbench[multi-gpu]" in reason("cuda", device_map="balanced")
    assert "base_model_tp_plan" in reason("cpu", tp="2", spec="tiny-gpt2", config=gpt2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "needs 2 GPUs" in reason("cuda", tp="2")
    assert spread_unsupported_reason("m", llama, "cpu", "none", "2", "none", "pytorch") is None


def test_ranks_merge_into_one_item() -> None:
    case = BenchCase("forward", "tiny-llama", "base", 1, 8, "cuda", "float16", tp="2")
    ranks = [
        Outcome(
            "ok",
            [0.010, 0.030, 0.020],
            Measurement.of(
                (
                    "rank 0",
                    {
                        "peak_memory_bytes": 100,
                        "parameter_bytes": 40,
                        "device": "cuda:0",
                        "flops_per_call": 600,
                    },
                )
            ),
        ),
        Outcome(
            "ok",
            [0.015, 0.025, 0.020],
            Measurement.of(
                (
                    "rank 1",
                    {
                        "peak_memory_bytes": 120,
                        "parameter_bytes": 40,
                        "device": "cuda:1",
                        "flops_per_call": 600,
                    },
                )
            ),
        ),
    ]
    samples, info = merge_ranks(case, ranks)
    assert samples == [0.015, 0.030, 0.020]  # each round as long as its slowest rank
    assert info["peak_memory_per_rank_bytes"] == [100, 120]
    assert info["peak_memory_bytes"] == 220
    assert info["parameter_bytes"] == 80
    assert info["rank_medians_s"] == [0.020, 0.020]
    assert info["tp_ranks"] == 2
    assert info["device"] == "cuda"
    # Each rank counts its own shard's FLOPs (measured on 2 gloo ranks: 606,208 of tiny-llama's 1,212,416).
    assert info["flops_per_call"] == 1200


def test_options_and_ids() -> None:
    assert parse_device_maps("auto,none") == ("auto", "none")
    with pytest.raises(OptionError, match=r"unknown device map 'everywhere'.*balanced"):
        parse_device_maps("everywhere")
    assert parse_tp("1, 2") == ("1", "2")
    with pytest.raises(OptionError, match="'0' is below the minimum"):
        parse_tp("0")
    case = BenchCase("forward", "tiny-llama", "base", 1, 8, "cuda", "float16", device_map="auto")
    assert case.id.endswith("-dmap:auto")
    assert BenchCase("forward", "tiny-llama", "base", 1, 8, "cpu", "float32", tp="2").id.endswith("-tp:2")


def test_two_rank_tensor_parallel_item_on_cpu(pytester: pytest.Pytester) -> None:
    """One real --tbench-tp 2 item: two gloo ranks on the CPU (transformers 5.24 shards tiny-llama there)."""
    pytester.makepyfile(test_bench="def test_forward(tbench):\n    tbench.forward()\n")
    args = [*TINY, "--tbench-models", "tiny-llama", "--tbench-devices", "cpu", "--tbench-tp", "2", "-rs"]
    result, data = run_json(pytester, *args)
    skipped = [line for line in result.outlines if "SKIPPED" in line]
    if skipped:  # a transformers that cannot shard on the CPU: the item says why
        pytest.skip(f"tensor parallel unsupported here: {skipped}")
    result.assert_outcomes(passed=1)
    (entry,) = data["benchmarks"]
    info = entry["extra_info"]
    assert entry["params"]["tbench_case"]["tp"] == "2"
    assert info["tp_ranks"] == 2
    assert len(info["peak_memory_per_rank_bytes"]) == 2
    assert info["peak_memory_bytes"] == sum(info["peak_memory_per_rank_bytes"])
    assert len(entry["stats"]["data"]) == 2
    # The merged rounds are the slowest rank's: no rank's median exceeds the item's slowest round.
    assert max(info["rank_medians_s"]) <= max(entry["stats"]["data"])
