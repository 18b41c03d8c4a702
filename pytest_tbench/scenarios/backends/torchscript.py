"""The classic TorchScript trace as a forward's runtime (the classic transformers benchmark's ``torchscript``
option): ``torch.jit.trace`` of the model's forward on the item's inputs, ``strict=False`` so that the model's
dict-like outputs trace, called under ``torch.inference_mode`` like the PyTorch forward.

The export time covers the trace and the executor's profiling runs, which optimise the traced graph.

A trace records the one path the Python code took for these inputs (masks, branches on shapes): it is valid
for exactly the inputs the rounds reuse, and the scenario checks its output against PyTorch's once.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from pytest_tbench.scenarios.backends.runner import Runner


class _Positional(torch.nn.Module):
    """The model called with its input tensors by position (what ``torch.jit.trace`` passes) and its other
    arguments (``use_cache=False``) fixed; returns the model's first output, the one the check compares."""

    def __init__(self, model: torch.nn.Module, names: list[str], constants: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.constants = constants

    def forward(self, *tensors: torch.Tensor) -> Any:
        output = self.model(**dict(zip(self.names, tensors, strict=True)), **self.constants)
        return output[0]


def torchscript_runner(model: torch.nn.Module, kwargs: dict[str, Any]) -> Runner:
    names = [name for name, value in kwargs.items() if isinstance(value, torch.Tensor)]
    constants = {name: value for name, value in kwargs.items() if not isinstance(value, torch.Tensor)}
    tensors = tuple(kwargs[name] for name in names)
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings say that a branch was recorded for these inputs only: the rounds reuse exactly them.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        wrapper = _Positional(model, names, constants)
        traced = torch.jit.trace(wrapper, tensors, strict=False, check_trace=False)

    def main_output() -> Any:
        with torch.inference_mode():
            return traced(*tensors)

    def call() -> None:
        main_output()  # dropped at once, as the PyTorch forward's is

    # TorchScript's profiling executor runs the first calls profiled, then optimises the graph on the next one
    # (seen: a first tiny-gpt2 call of 186 ms against 0.5 ms steady): part of the export, never of a round.
    for _ in range(torch._C._jit_get_num_profiled_runs() + 1):  # type: ignore[attr-defined]  # not in stubs
        call()
    return Runner(call, main_output)
