"""torch.compile as a variant of a scenario (``--tbench-compile MODE``): the compiled model, the calls that
compile it kept out of the rounds, and evidence that the measured rounds ran compiled code without compiling.

A scenario that honours ``case.compile`` calls ``compiled_module`` (forward, train) or has transformers
compile (generate); ``build_work`` then wraps its work in ``SteadyCompiled``, whose ``prepare`` step runs
before the warm-up rounds:

- dynamo is reset first, so the item's first call is a first compile (not one a previous item paid for), and
  a long sweep cannot pile recompiles up towards dynamo's limits;
- whole rounds (hooks included, untimed by the launcher) run until one compiles no dynamo frame; the calls
  that compiled are timed (the device synchronised) and recorded as ``compile_time_s``, the rounds as
  ``compile_warmup_rounds``. A first call that compiles nothing would measure eager code, and a call that
  still compiles after ``MAX_COMPILE_ROUNDS`` never settles: both fail the item;
- the usual ``--tbench-warmup`` rounds follow (CUDA graphs record there), then the measured rounds. Frame
  compiles are counted in every round; any inside the measured rounds fails the item
  (``recompiles_measured``, recorded as 0 otherwise);
- while the item runs, ``torch._dynamo.config.fail_on_recompile_limit_hit`` is on: past dynamo's recompile
  limit a call would otherwise run eager without a word, and its rounds would be reported as compiled.

Inductor's on-disk caches (``TORCHINDUCTOR_FX_GRAPH_CACHE`` and friends) survive the reset and processes, so
``compile_time_s`` of a repeated session is a warm-cache compile; ``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1``
measures a cold one.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch._dynamo
from torch._dynamo.exc import FailOnRecompileLimitHit

from pytest_tbench.core.axes import COMPILE_OFF
from pytest_tbench.core.metric_table import (
    COMPILE_FRAMES,
    COMPILE_TIME_S,
    COMPILE_WARMUP_ROUNDS,
    RECOMPILES_MEASURED,
)
from pytest_tbench.measure.rounds import RoundBody
from pytest_tbench.measure.trackers.compiles import MeasuredCompileError, dynamo_frame_compiles
from pytest_tbench.measure.work import Work, WorkWrapper
from pytest_tbench.settings.cases import BenchCase

# Rounds a compiled item may take to stop compiling before it fails: a shape or guard that changes on every
# call would otherwise compile until dynamo's recompile limit (8 per code object).
MAX_COMPILE_ROUNDS = 10

_RECOMPILES_HINT = (
    "TORCH_LOGS=recompiles shows which guard fails; a shape or value that changes between calls keeps the "
    "compiled code from settling"
)


class CompileNotSteady(RuntimeError):
    """The compiled model did not settle into running compiled code before the rounds."""


def compiled_module(model: torch.nn.Module, mode: str) -> Any:
    """The model as the item calls it: itself, or ``torch.compile`` of it in ``mode``. A wrapper, not
    ``model.compile()``: the session's copy of the model stays as loaded for the items that follow."""
    if mode == COMPILE_OFF:
        return model
    return torch.compile(model, mode=mode)


class SteadyCompiled(WorkWrapper):
    """``inner`` (whose call runs the compiled model) with its compiling done in ``prepare`` and its frame
    compiles counted in every round; ``devices``: every device the model touches (a device-mapped model's
    GPUs), all synchronised around the timed compiling calls, as the rounds are."""

    def __init__(self, inner: Work, case: BenchCase, devices: tuple[str, ...] = ()) -> None:
        super().__init__(inner)
        self.case = case
        self.devices = devices or (case.device,)
        self.settle_rounds = 0
        self.compile_time_s = 0.0
        # Dynamo frame compiles per round, in order: settling, warm-up, measured.
        self.per_round: list[int] = []
        self._at_round_start = 0
        self._fail_on_limit: bool | None = None  # dynamo's setting before the item, put back by cleanup

    def before_round(self) -> None:
        self.inner.before_round()
        self._at_round_start = dynamo_frame_compiles()

    def call(self) -> object:
        try:
            return self.inner.call()
        except FailOnRecompileLimitHit as exc:
            raise CompileNotSteady(
                f"{self.case.id}: dynamo reached its recompile limit (torch._dynamo.config.recompile_limit = "
                f"{torch._dynamo.config.recompile_limit}); past it the call would run eager while reported "
                f"as compile:{self.case.compile}, so this item fails. {_RECOMPILES_HINT}"
            ) from exc

    def after_round(self) -> None:
        self.per_round.append(dynamo_frame_compiles() - self._at_round_start)
        self.inner.after_round()

    def prepare(self) -> None:
        self.inner.prepare()
        # A user's work (tbench.measure) is measured again as it is under the gate's retries: start afresh.
        self.settle_rounds, self.compile_time_s = 0, 0.0
        self.per_round.clear()
        self._fail_on_limit = torch._dynamo.config.fail_on_recompile_limit_hit
        if not torch._dynamo.config.suppress_errors:  # dynamo refuses the two together
            torch._dynamo.config.fail_on_recompile_limit_hit = True
        torch._dynamo.reset()
        while self._compiling_round():
            if self.settle_rounds >= MAX_COMPILE_ROUNDS:
                raise CompileNotSteady(
                    f"{self.case.id}: still compiling after {MAX_COMPILE_ROUNDS} calls (dynamo frame "
                    f"compiles per call: {self.per_round}), so no round would time steady compiled code and "
                    f"this item fails. {_RECOMPILES_HINT}"
                )

    def _compiling_round(self) -> bool:
        """One whole round, its call timed with every device synchronised, as the rounds' are; whether it
        compiled (its time is then compile time)."""
        body = RoundBody(self, self.case.device, self.devices)
        body.before()
        start = time.perf_counter()
        body.timed()
        elapsed = time.perf_counter() - start
        body.after()
        self.settle_rounds += 1
        if self.per_round[-1]:
            self.compile_time_s += elapsed
            return True
        if self.settle_rounds == 1:
            raise CompileNotSteady(
                f"{self.case.id}: the first call compiled nothing, so the rounds would time eager code as "
                f"compile:{self.case.compile}; the call does not run the model through torch.compile "
                "(scenarios.compiled.compiled_module)"
            )
        return False

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        unmeasured = self.settle_rounds + warmup_rounds
        measured = self.per_round[unmeasured:]
        if any(measured):
            raise MeasuredCompileError(
                f"{self.case.id}: dynamo compiled {sum(measured)} frame(s) during the measured rounds (per "
                f"round: {measured}) after {self.settle_rounds} compiling call(s) settled; those rounds time "
                f"compilation, not compiled code, so this item fails. {_RECOMPILES_HINT}"
            )
        return {
            **self.inner.metrics(unmeasured),
            COMPILE_TIME_S: self.compile_time_s,
            COMPILE_WARMUP_ROUNDS: self.settle_rounds,
            COMPILE_FRAMES: sum(self.per_round[:unmeasured]),
            RECOMPILES_MEASURED: sum(measured),
        }

    def records(self, warmup_rounds: int) -> list[Any]:
        return self.inner.records(self.settle_rounds + warmup_rounds)

    def cleanup(self) -> None:
        try:
            self.inner.cleanup()
        finally:
            # The next item starts with dynamo's caches empty, and with dynamo's own setting.
            torch._dynamo.reset()
            if self._fail_on_limit is not None:
                torch._dynamo.config.fail_on_recompile_limit_hit = self._fail_on_limit
