"""Whether transformers compiled ``generate``'s decode step, and how much dynamo compiled during a call.

transformers 5.x compiles the decode step by itself (``torch.compile``, mode ``reduce-overhead``: CUDA
graphs) when its criterion ``_valid_auto_compile_criteria`` holds: a compilable cache
(``cache_implementation=static``) on CUDA, not on CPU. The compiled call, the static cache's length and
dynamo's code caches then stay on the model and in the process, into later items; past dynamo's recompile
limit the call silently runs eager. So an item records transformers' own decision per call, counts dynamo's
frame compiles per round, and drops that state when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch._dynamo
from torch._dynamo.utils import counters

# What transformers' generate leaves on the model: the compiled forward (with its CUDA graphs), the compile
# config it was made for, and the longest static cache so far (later calls size their cache to at least it).
GENERATE_STATE_ATTRS = ("_compiled_call", "_last_compile_config", "_previous_max_cache_length")
_CRITERION = "_valid_auto_compile_criteria"


class MeasuredCompileError(AssertionError):
    """Compilation happened inside the measured rounds: they would time compiling, not steady running."""


def dynamo_frame_compiles() -> int:
    """Frames dynamo has tried to compile in this process so far: first compiles, recompiles after a guard
    failed, and failed attempts (the recompile limit reached). A call that reuses compiled code adds none."""
    return int(counters["frames"]["total"])


class CompileWatch:
    """Wraps the model's compile criterion for one item, so that each generate call's decision is
    transformers' own (nothing re-derived here); ``close`` puts the class's method back."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self._compiled = False
        self.ever_compiled = False
        criterion: Callable[..., bool] = getattr(model, _CRITERION)

        def watched(*args: Any, **kwargs: Any) -> bool:
            result = bool(criterion(*args, **kwargs))
            self._compiled = self._compiled or result
            self.ever_compiled = self.ever_compiled or result
            return result

        vars(model)[_CRITERION] = watched  # an instance attribute shadows the method for this model only

    def take(self) -> bool:
        """Whether a generate call since the last ``take`` ran the compiled decode step."""
        compiled = self._compiled
        self._compiled = False
        return compiled

    def close(self) -> None:
        vars(self._model).pop(_CRITERION, None)


def release_generate_state(model: torch.nn.Module, dynamo_compiled: bool) -> None:
    """The next item starts from the model as loaded: without the compiled call, its graph pools and the
    static cache's length; and, when this item compiled anything, with dynamo's caches empty, so that a long
    sweep does not pile up recompiles towards dynamo's limit (past which calls silently run eager)."""
    for name in GENERATE_STATE_ATTRS:
        vars(model).pop(name, None)
    if dynamo_compiled:
        torch._dynamo.reset()
