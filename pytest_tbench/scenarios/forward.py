"""Inference: one forward pass over the whole batch, under ``torch.inference_mode``; on PyTorch, or on another
backend (``backend.py``)."""

from __future__ import annotations

import inspect

import torch

from pytest_tbench.core.axes import BACKEND_PYTORCH
from pytest_tbench.measure.work import Work
from pytest_tbench.models.families import family_of, flop_tokens
from pytest_tbench.models.flops import FlopEstimate, FlopPass, matmul_parameters
from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.scenarios.backend import backend_work
from pytest_tbench.scenarios.compiled import compiled_module
from pytest_tbench.scenarios.scenario import Scenario, all_variants
from pytest_tbench.settings.cases import BenchCase


def forward_work(loaded: LoadedModel, case: BenchCase) -> Work:
    model = loaded.model
    run = compiled_module(model, case.compile)
    kwargs: dict[str, object] = dict(make_inputs(loaded.config, case.batch_size, case.seq_len, case.device))
    # A lone forward pass has no use for a KV cache; building one would add to its time and memory.
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False

    def call() -> None:
        with torch.inference_mode():
            run(**kwargs)  # the output is dropped at once, so rounds do not hold each other's activations

    # Positions the model runs over: text tokens, an image's patches + class token, an audio window's frames.
    tokens = case.batch_size * family_of(loaded.config).sequence_tokens(loaded.config, case.seq_len)
    estimated = case.batch_size * flop_tokens(model, loaded.config, case.seq_len)
    flops = FlopPass(lambda mark: call(), FlopEstimate(2, matmul_parameters(model).count, estimated))
    work = Work(call, samples=case.batch_size, tokens=tokens, flops=flops)
    return work if case.backend == BACKEND_PYTORCH else backend_work(work, model, case, kwargs)


SCENARIO = Scenario(
    "forward",
    lambda case: case.seq_len,
    lambda loaded, case, _: forward_work(loaded, case),
    variant_reason=all_variants,
)
