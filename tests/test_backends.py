"""--tbench-backend (``scenarios/backends/``, ``scenarios/backend.py``): a forward run by ONNX Runtime or as a
TorchScript trace, its export timed apart and never in the rounds, its output checked once against PyTorch's,
and the skips (other modes, compile and quantization, the onnx extra missing, dtypes ONNX Runtime cannot
run).

One session exports tiny-gpt2 for real on CPU; the CUDA path (IOBinding) runs against fakes that record the
order of the calls, as no GPU is here; export time outside the rounds is also checked with a fake export of a
known length.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pytest_tbench.scenarios import backend as backend_scenario
from pytest_tbench.scenarios import backends
from pytest_tbench.scenarios.backend import BackendMismatch, output_difference
from pytest_tbench.scenarios.backends import ort, unavailable_reason
from pytest_tbench.scenarios.backends.runner import BackendError, Runner
from pytest_tbench.settings.cases import BenchCase

from .conftest import ALL_MODES_BENCH, FORWARD_BENCH, TINY, run_json

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module", autouse=True)
def exporter_loaded() -> None:
    """One small real export in this process before any pytester run takes its snapshot of the modules: an
    in-process run drops the modules it imported when it ends, but torch.export and the ONNX exporter register
    themselves in registries that outlive them (see tests/test_compile.py's fixture)."""
    import onnxruntime  # noqa: F401

    torch.onnx.export(torch.nn.Linear(2, 2).eval(), (torch.ones(1, 2),), dynamo=True, verbose=False)


def _case(**fields: Any) -> BenchCase:
    values: dict[str, Any] = {
        "mode": "forward",
        "model": "tiny-gpt2",
        "head": "base",
        "batch_size": 1,
        "seq_len": 8,
        "device": "cpu",
        "dtype": "float32",
        "backend": "onnxruntime",
    }
    return BenchCase(**{**values, **fields})


def test_backends_run_the_forward_with_their_export_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-backend", "pytorch,onnxruntime,torchscript")
    result.assert_outcomes(passed=3)
    benches = {b["name"]: b for b in data["benchmarks"]}
    assert sorted(benches) == [
        "test_forward[tiny-gpt2-b1-s8-cpu-float32-backend:onnxruntime]",
        "test_forward[tiny-gpt2-b1-s8-cpu-float32-backend:torchscript]",
        "test_forward[tiny-gpt2-b1-s8-cpu-float32]",  # the default keeps the id it had
    ]
    plain = benches["test_forward[tiny-gpt2-b1-s8-cpu-float32]"]["extra_info"]
    assert plain["backend"] == "pytorch" and "export_time_s" not in plain and "onnx_opset" not in plain
    onnx = benches["test_forward[tiny-gpt2-b1-s8-cpu-float32-backend:onnxruntime]"]
    info = onnx["extra_info"]
    assert info["backend"] == "onnxruntime"
    assert info["onnxruntime_provider"] == "CPUExecutionProvider"
    assert info["onnxruntime_version"] == __import__("onnxruntime").__version__
    assert isinstance(info["onnx_opset"], int) and info["onnx_opset"] >= 17
    script = benches["test_forward[tiny-gpt2-b1-s8-cpu-float32-backend:torchscript]"]["extra_info"]
    assert "onnx_opset" not in script
    for bench in (onnx, benches["test_forward[tiny-gpt2-b1-s8-cpu-float32-backend:torchscript]"]):
        extra, rounds = bench["extra_info"], bench["stats"]["data"]
        assert len(rounds) == 2  # --tbench-rounds: the export is none of them
        assert statistics.median(rounds) == pytest.approx(extra["median_s"])
        # An export (a trace) runs the model through a tracer and more: longer than any round of it.
        assert max(rounds) < extra["export_time_s"], (bench["name"], rounds, extra["export_time_s"])
        # tiny-gpt2's hidden states are of order 1: float32 noise, far inside the 1e-4 tolerance.
        assert 0 <= extra["backend_max_abs_diff"] < 1e-4
        # The FLOP pass counts the PyTorch forward of the same call: the same math.
        assert extra["flops_per_call"] == plain["flops_per_call"] > 0


def test_export_time_is_kept_out_of_the_rounds(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export of a known length (0.3 s) around a call of microseconds: export_time_s holds it, no round."""

    def slow_export(backend: str, model: Any, kwargs: dict[str, Any], case: BenchCase) -> Runner:
        time.sleep(0.3)
        reference = model(**kwargs).last_hidden_state.detach()
        return Runner(lambda: None, lambda: reference)

    monkeypatch.setattr(backend_scenario, "open_runner", slow_export)
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-backend", "torchscript", "--tbench-rounds", "5")
    result.assert_outcomes(passed=1)
    (bench,) = data["benchmarks"]
    assert bench["extra_info"]["export_time_s"] >= 0.3
    assert max(bench["stats"]["data"]) < 0.05  # the fake's call: no round holds the export
    assert bench["extra_info"]["backend_max_abs_diff"] == 0.0


def test_other_modes_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-backend", "torchscript", "--tbench-new-tokens", "2", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "*SKIPPED*backend torchscript runs the forward only; generate items run on pytorch*",
            "*SKIPPED*backend torchscript runs the forward only; train items run on pytorch*",
        ]
    )


def test_unknown_backend_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    bad = pytester.runpytest(*TINY, "--tbench-backend", "openvino")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["*unknown backend 'openvino'; valid: pytorch, onnxruntime, torchscript, tensorrt*"]
    )


def test_combinations_and_dtypes_are_skips_that_say_why() -> None:
    assert unavailable_reason(_case(backend="pytorch", mode="train")) is None
    assert unavailable_reason(_case()) is None
    assert unavailable_reason(_case(backend="torchscript", dtype="bfloat16")) is None
    assert "compile:default items run on pytorch" in str(unavailable_reason(_case(compile="default")))
    assert "quant:int8-dynamic items run on pytorch" in str(
        unavailable_reason(_case(backend="torchscript", quantization="int8-dynamic"))
    )
    assert "no bfloat16" in str(unavailable_reason(_case(dtype="bfloat16")))
    assert "use float32" in str(unavailable_reason(_case(dtype="float16")))
    # This onnxruntime is the CPU build: a CUDA item names the build that has the provider.
    assert "pip install onnxruntime-gpu" in str(unavailable_reason(_case(device="cuda:0", dtype="float16")))


def test_a_missing_onnx_package_is_a_skip_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        backends.importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name)
    )
    reason = str(unavailable_reason(_case()))
    assert reason == "backend onnxruntime needs onnxscript: pip install 'pytest-tbench[onnx]'"
    assert unavailable_reason(_case(backend="torchscript")) is None  # TorchScript is torch's own


def test_outputs_beyond_the_tolerance_fail_the_item() -> None:
    case = _case()
    reference = torch.tensor([[1.0, -20.0], [3.0, 4.0]])
    assert output_difference(case, reference, reference.numpy() + 1e-4) == pytest.approx(1e-4, rel=0.05)
    # The tolerance scales with the output's largest magnitude (20 here): 1e-4 x 20.
    with pytest.raises(BackendMismatch, match=r"by up to 0\.01, beyond the tolerance 0\.002"):
        output_difference(case, reference, reference + 0.01)
    with pytest.raises(BackendMismatch, match="beyond the tolerance"):
        output_difference(case, reference, torch.full((2, 2), float("nan")))
    with pytest.raises(BackendMismatch, match=r"shape \(4,\), PyTorch's \(2, 2\)"):
        output_difference(case, reference, reference.flatten())


class _Binding:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def bind_input(self, *args: Any) -> None:
        self.calls.append(("bind_input", *args))

    def bind_output(self, *args: Any) -> None:
        self.calls.append(("bind_output", *args))

    def synchronize_inputs(self) -> None:
        self.calls.append(("synchronize_inputs",))

    def synchronize_outputs(self) -> None:
        self.calls.append(("synchronize_outputs",))

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        self.calls.append(("copy_outputs_to_cpu",))
        return [np.zeros((1, 8, 64), dtype=np.float32)]


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


class _Session:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def io_binding(self) -> _Binding:
        return _Binding(self.calls)

    def get_inputs(self) -> list[_Node]:
        return [_Node("input_ids"), _Node("attention_mask")]

    def get_outputs(self) -> list[_Node]:
        return [_Node("last_hidden_state")]

    def run_with_iobinding(self, binding: _Binding) -> None:
        self.calls.append(("run_with_iobinding",))

    def run(self, *args: Any) -> None:
        raise AssertionError("a CUDA round runs the bound graph, never session.run (a host copy per call)")


def test_cuda_rounds_run_on_bound_device_memory() -> None:
    session = _Session()
    ids = torch.ones(1, 8, dtype=torch.int64)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}
    feeds = ort.session_feeds(session, kwargs)
    runner = ort.cuda_runner(session, feeds, device_id=1)
    assert session.calls == [
        ("bind_input", "input_ids", "cuda", 1, np.int64, [1, 8], feeds["input_ids"].data_ptr()),
        ("bind_input", "attention_mask", "cuda", 1, np.int64, [1, 8], feeds["attention_mask"].data_ptr()),
        ("bind_output", "last_hidden_state", "cuda", 1),
        ("synchronize_inputs",),
    ]
    session.calls.clear()
    runner.call()
    runner.call()
    # Every round: the bound run, then its outputs waited for (so the round's time is the run's).
    assert session.calls == [("run_with_iobinding",), ("synchronize_outputs",)] * 2
    session.calls.clear()
    assert runner.main_output().shape == (1, 8, 64)
    assert session.calls == [("run_with_iobinding",), ("synchronize_outputs",), ("copy_outputs_to_cpu",)]
    # The bound addresses' tensors live as long as the call: dropped by everyone else, they are not freed.
    bound = weakref.ref(feeds["input_ids"])
    del feeds, kwargs, ids
    gc.collect()
    assert bound() is not None


@pytest.mark.parametrize("allow_tf32", [False, True])
def test_the_cuda_provider_runs_float32_as_pytorch_does(
    monkeypatch: pytest.MonkeyPatch, allow_tf32: bool
) -> None:
    """ONNX Runtime's CUDA provider defaults to TF32 for float32; PyTorch's matmuls do not unless allowed."""
    import onnxruntime

    asked: list[Any] = []

    class Session:
        def __init__(self, path: str, options: Any, providers: list[Any]) -> None:
            asked.extend(providers)

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")  # what allow_tf32 reads
    try:
        ort.open_session(Path("model.onnx"), "cuda:0", threads=2)
    finally:
        torch.set_float32_matmul_precision(before)
    assert asked == [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": "1" if allow_tf32 else "0"})]


def test_a_graph_input_the_item_lacks_is_an_error() -> None:
    with pytest.raises(BackendError, match="takes attention_mask, which the item's inputs \\(input_ids\\)"):
        ort.session_feeds(_Session(), {"input_ids": torch.ones(1, 8, dtype=torch.int64)})


def test_a_session_that_fell_back_to_the_cpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    class FellBack:
        def __init__(self, path: str, options: Any, providers: list[Any]) -> None:
            assert providers == [("CUDAExecutionProvider", {"device_id": 1, "use_tf32": "0"})]

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", FellBack)
    with pytest.raises(BackendError, match="instead of CUDAExecutionProvider"):
        ort.open_session(Path("model.onnx"), "cuda:1", threads=2)


def test_a_users_call_is_not_run_as_a_backend_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bench="""
def test_measure(tbench):
    tbench.measure(lambda: None)
"""
    )
    result = pytester.runpytest(*TINY, "--tbench-backend", "pytorch,torchscript", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*backend torchscript runs tbench.forward() only*"])


def test_an_isolated_item_exports_in_its_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-backend", "onnxruntime", "--tbench-isolate")
    result.assert_outcomes(passed=1)
    (bench,) = data["benchmarks"]
    info = bench["extra_info"]
    assert info["isolated"] is True and info["onnxruntime_provider"] == "CPUExecutionProvider"
    assert max(bench["stats"]["data"]) < info["export_time_s"]
    assert 0 <= info["backend_max_abs_diff"] < 1e-4


# --tbench-backend tensorrt: ONNX Runtime's TensorRT provider on a CUDA GPU.
def test_tensorrt_items_that_cannot_run_here_are_skips_that_say_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime

    tensorrt = dict(backend="tensorrt", device="cuda:0", dtype="float16")
    assert "runs on a CUDA GPU (TensorRT has no CPU path); this item is on cpu" in str(
        unavailable_reason(_case(backend="tensorrt"))
    )
    assert "no bfloat16" in str(unavailable_reason(_case(**{**tensorrt, "dtype": "bfloat16"})))
    # This onnxruntime is the CPU build: the provider and the extra that brings it are named.
    reason = str(unavailable_reason(_case(**tensorrt)))
    assert "has no TensorrtExecutionProvider" in reason and "pytest-tbench[tensorrt]" in reason
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    assert unavailable_reason(_case(**tensorrt)) is None
    # float32: TensorRT allows TF32, which the provider cannot forbid: only where PyTorch allows it too.
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert "TF32" in str(unavailable_reason(_case(**{**tensorrt, "dtype": "float32"})))
        torch.set_float32_matmul_precision("high")
        assert unavailable_reason(_case(**{**tensorrt, "dtype": "float32"})) is None
    finally:
        torch.set_float32_matmul_precision(before)
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda n: None if n == "onnx" else real(n))
    assert unavailable_reason(_case(**tensorrt)) == (
        "backend tensorrt needs onnx: pip install 'pytest-tbench[tensorrt]'"
    )


def test_the_tensorrt_session_puts_tensorrt_first_and_fails_where_it_fell_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime

    asked: list[Any] = []
    opened_on = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]

    class Session:
        def __init__(self, path: str, options: Any, providers: list[Any]) -> None:
            asked.extend(providers)

        def get_providers(self) -> list[str]:
            return opened_on

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    ort.open_session(Path("model.onnx"), "cuda:1", threads=2, tensorrt=True, fp16=True)
    trt = {"device_id": 1, "trt_fp16_enable": "1", "trt_engine_cache_enable": "0"}
    assert asked[0] == ("TensorrtExecutionProvider", trt)
    assert asked[1][0] == "CUDAExecutionProvider"  # behind it, for nodes TensorRT does not take
    opened_on = ["CUDAExecutionProvider"]  # TensorRT's libraries did not load
    with pytest.raises(BackendError, match="instead of TensorrtExecutionProvider"):
        ort.open_session(Path("model.onnx"), "cuda:1", threads=2, tensorrt=True)


def test_the_tensorrt_engine_is_built_before_any_round(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TensorRT builds its engine at the session's first run: that run is in the runner's opening (so in
    export_time_s), timed apart, and the rounds run the built engine."""
    session = _Session()
    opened: list[Any] = []

    def exported(model: Any, kwargs: Any, device: str, tensorrt: bool = False, fp16: bool = False) -> Any:
        opened.append((device, tensorrt, fp16))
        return tmp_path, 18, session, ort.session_feeds(session, kwargs)

    session.get_providers = lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider"]  # type: ignore[attr-defined]
    monkeypatch.setattr(ort, "_exported", exported)
    ids = torch.ones(1, 8, dtype=torch.int64)
    runner = ort.tensorrt_runner(
        torch.nn.Identity(), {"input_ids": ids, "attention_mask": ids}, "cuda:0", "float16"
    )
    assert opened == [("cuda:0", True, True)]
    assert session.calls[-2:] == [("run_with_iobinding",), ("synchronize_outputs",)]  # the build run
    assert runner.info["tensorrt_fp16"] is True and runner.info["tensorrt_engine_build_s"] >= 0
    assert runner.info["onnxruntime_provider"] == "TensorrtExecutionProvider"
    assert "tensorrt_version" in runner.info
