"""A forward run by another backend (``--tbench-backend``, ``backends/``): the PyTorch forward's work with its
call replaced by the backend's, the export (or trace) timed apart as ``export_time_s``, and the backend's
output checked once against PyTorch's.

The export happens when the work is built, before the item's memory tracking and rounds begin: never in a
round, and not in the item's peak memory (it holds the model's graph and weights several times over while it
runs, which running the exported model does not). What the backend keeps (ONNX Runtime's copy of the weights)
is resident when the item starts, as the PyTorch weights are. The work keeps the PyTorch FLOP pass: the
exported graph computes the same products for the same call, and the check says it computes the same values.

The check: one run of each on the item's inputs, their first outputs (last hidden state, or logits) compared,
``backend_max_abs_diff`` recorded. The tolerance is relative to the output's largest magnitude (at least 1):
float32 1e-4, since summing a K-term product in another order moves it by about sqrt(K) x float32's 1.2e-7
(under 1e-5 for K = 3072), compounded over a dozen layers, while a wrong graph (a lost mask, a wrong op) moves
it by a sizeable fraction of its scale; float16 1e-2 (its epsilon is 9.8e-4, and another runtime's kernels
accumulate in other precisions). Beyond it the item fails: its rounds would time another computation.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from pytest_tbench.core.metric_table import BACKEND_MAX_ABS_DIFF, EXPORT_TIME_S
from pytest_tbench.machine.devices import synchronize
from pytest_tbench.measure.work import Work, WorkWrapper
from pytest_tbench.scenarios.backends import ONNXRUNTIME, TENSORRT, TORCHSCRIPT
from pytest_tbench.scenarios.backends.runner import BackendError, Runner
from pytest_tbench.settings.cases import BenchCase

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


class BackendMismatch(AssertionError):
    """The backend's output is not PyTorch's within the tolerance."""


def open_runner(backend: str, model: torch.nn.Module, kwargs: dict[str, Any], case: BenchCase) -> Runner:
    if backend == ONNXRUNTIME:
        from pytest_tbench.scenarios.backends.ort import onnxruntime_runner

        return onnxruntime_runner(model, kwargs, case.device)
    if backend == TENSORRT:
        from pytest_tbench.scenarios.backends.ort import tensorrt_runner

        return tensorrt_runner(model, kwargs, case.device, case.dtype)
    if backend == TORCHSCRIPT:
        from pytest_tbench.scenarios.backends.torchscript import torchscript_runner

        return torchscript_runner(model, kwargs)
    raise BackendError(f"unknown backend {backend!r}")


def first_output(output: Any) -> Any:
    """A model output's first entry (ModelOutput and tuples), or the output itself."""
    if hasattr(output, "to_tuple"):
        return output.to_tuple()[0]
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def output_difference(case: BenchCase, reference: Any, got: Any) -> float:
    """The largest absolute difference of ``got`` from PyTorch's ``reference``; BackendMismatch beyond the
    dtype's tolerance (NaN included)."""
    expected = torch.as_tensor(reference).detach().to("cpu", torch.float64)
    actual = torch.as_tensor(got).detach().to("cpu", torch.float64)
    if expected.shape != actual.shape:
        raise BackendMismatch(
            f"{case.id}: backend {case.backend}'s first output has shape {tuple(actual.shape)}, PyTorch's "
            f"{tuple(expected.shape)}"
        )
    diff = float((expected - actual).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    limit = TOLERANCE[case.dtype] * scale
    if not diff <= limit:
        raise BackendMismatch(
            f"{case.id}: backend {case.backend}'s output differs from PyTorch's by up to {diff:.3g}, beyond "
            f"the tolerance {limit:.3g} ({TOLERANCE[case.dtype]:g} x the output's largest magnitude, "
            f"{scale:.3g}); its rounds would time another computation, so this item fails"
        )
    return diff


def backend_work(work: Work, model: torch.nn.Module, case: BenchCase, kwargs: dict[str, Any]) -> Work:
    """``work`` (the PyTorch forward on ``kwargs``) run by ``case.backend``: exported now, checked once."""
    synchronize(case.device)
    start = time.perf_counter()
    runner = open_runner(case.backend, model, kwargs, case)
    synchronize(case.device)
    export_time_s = time.perf_counter() - start
    try:
        with torch.inference_mode():
            reference = first_output(model(**kwargs))
        diff = output_difference(case, reference, runner.main_output())
        del reference
    except BaseException:
        runner.close()
        raise

    return BackendWork(work, runner, {EXPORT_TIME_S: export_time_s, BACKEND_MAX_ABS_DIFF: diff})


class BackendWork(WorkWrapper):
    """The PyTorch forward's work with its call run by the backend's ``runner``; the FLOP pass stays the
    PyTorch forward's (the same products)."""

    def __init__(self, inner: Work, runner: Runner, facts: dict[str, Any]) -> None:
        super().__init__(inner)
        self.runner = runner
        self.facts = facts  # the export's time and the output check's difference

    def call(self) -> object:
        return self.runner.call()

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        return {**self.inner.metrics(warmup_rounds), **self.facts, **self.runner.info}

    def cleanup(self) -> None:
        try:
            self.inner.cleanup()
        finally:
            self.runner.close()
