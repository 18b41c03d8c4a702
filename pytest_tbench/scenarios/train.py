"""Training: one optimizer step per call (forward with labels, backward, step, zero_grad).

In float16/bfloat16 a step is what people run, as ``Trainer(fp16=True)``/``bf16=True`` do: float32 master
weights (train copies are loaded in float32, see ``ModelKey.weights_dtype``), the forward under
``torch.autocast`` in the case's dtype, and for float16 a ``GradScaler`` (bfloat16 has float32's exponent
range and needs none). Pure float16 AdamW is not a benchmark: its second moment underflows and every weight is
NaN after the first step.

The model is put in train mode for the item and back in eval mode after it; its optimizer and scaler are made
per item and dropped with the item, and gradients are freed (``set_to_none``). The weights the item trained
are marked spent, so the next train item of the model loads a fresh copy (``ModelCache.get``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pytest_tbench.core.metric_table import OPTIMIZER_STATE_BYTES, TRAIN_PRECISION, TRAIN_STEPS
from pytest_tbench.measure.work import Work
from pytest_tbench.models.families import family_of, flop_tokens
from pytest_tbench.models.flops import FlopEstimate, FlopPass, Mark, matmul_parameters
from pytest_tbench.models.inputs import inputs_generator, make_inputs
from pytest_tbench.models.loading import AMP_DTYPES, TORCH_DTYPES, LoadedModel
from pytest_tbench.scenarios.compiled import compiled_module
from pytest_tbench.scenarios.scenario import Scenario, all_variants
from pytest_tbench.settings.cases import BenchCase

LEARNING_RATE = 1e-5


class TrainingDiverged(RuntimeError):
    """A measured step's loss was not finite: the timings would be of NaN arithmetic, not of training."""


@dataclass(frozen=True)
class TrainPrecision:
    """How a train item computes: ``name`` is recorded as ``train_precision``."""

    name: str  # "float32", "amp-float16" or "amp-bfloat16"
    autocast_dtype: torch.dtype | None  # None: no autocast, the weights' own dtype throughout

    @property
    def scaled(self) -> bool:
        # float16's 5-bit exponent flushes small gradients to zero unless the loss is scaled up first.
        return self.autocast_dtype == torch.float16


def train_precision(dtype: str) -> TrainPrecision:
    if dtype in AMP_DTYPES:
        return TrainPrecision(f"amp-{dtype}", TORCH_DTYPES[dtype])
    return TrainPrecision(dtype, None)


def make_optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer | None:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=LEARNING_RATE)
    if name == "sgd":
        return torch.optim.SGD(params, lr=LEARNING_RATE)
    return None  # "none": forward and backward only


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def weights_fingerprint(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Per parameter tensor, its float64 sum and sum of squares (shape ``(len(params), 2)``): any optimizer
    step moves them, and unlike a snapshot of the weights they cost no memory worth counting."""
    if not params:
        return torch.zeros(0, 2, dtype=torch.float64)
    # A tensor-parallel rank checks the shard it holds (a DTensor's to_local): whole-tensor reductions of a
    # DTensor are collectives, and its results do not convert to Python.
    params = [p.to_local() if hasattr(p, "to_local") else p for p in params]
    with torch.no_grad():
        sums = [p.sum(dtype=torch.float64) for p in params]
        squares = [torch.linalg.vector_norm(p, dtype=torch.float64) ** 2 for p in params]
    return torch.stack([torch.stack(sums), torch.stack(squares)], dim=1)


def _check_master_weights(
    params: list[torch.nn.Parameter], precision: TrainPrecision, case: BenchCase
) -> None:
    if precision.autocast_dtype is None:
        return
    found = {p.dtype for p in params} - {torch.float32}
    if found:
        raise ValueError(
            f"{case.id}: {precision.name} training needs float32 master weights, but the model has "
            f"{sorted(str(d) for d in found)} parameters; load train copies with ModelKey(..., train=True), "
            "which loads float16/bfloat16 train items in float32"
        )


class TrainWork(Work):
    """One optimizer step per call; what the rounds leave behind (steps, losses, the scaler's skips) is kept
    on the work and read untimed after each round (the device is already synchronised)."""

    def __init__(self, loaded: LoadedModel, case: BenchCase, optimizer_name: str) -> None:
        model, family = loaded.model, family_of(loaded.config)
        super().__init__(
            samples=case.batch_size,
            tokens=case.batch_size * family.sequence_tokens(loaded.config, case.seq_len),
        )
        self.loaded, self.model, self.case = loaded, model, case
        self.inputs = _train_inputs(loaded, case)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.precision = train_precision(case.dtype)
        _check_master_weights(self.params, self.precision, case)
        self.device_type = torch.device(
            case.device
        ).type  # "cpu" or "cuda": what autocast and GradScaler take
        self.optimizer_name = optimizer_name
        self.optimizer = make_optimizer(optimizer_name, self.params)
        # Without an optimizer nothing steps, so there is nothing for a scaler to guard or skip.
        scaled = self.precision.scaled and self.optimizer is not None
        self.scaler = torch.amp.GradScaler(self.device_type) if scaled else None
        self.steps = 0
        self.loss: torch.Tensor | None = None  # the last step's, on the device
        self.losses: list[float] = []  # one per round, warm-up included
        self.skipped = 0  # optimizer steps a GradScaler skipped because the scaled gradients overflowed
        self.scale = self.scaler.get_scale() if self.scaler is not None else 0.0  # after the last round
        self.start = weights_fingerprint(self.params)  # before the first round, untimed
        self.run = compiled_module(model, case.compile)  # its backward is compiled too (AOTAutograd)
        estimated = case.batch_size * flop_tokens(model, loaded.config, case.seq_len)
        self.flops = FlopPass(self._count_pass, FlopEstimate(6, matmul_parameters(model).count, estimated))

    def _forward_loss(self) -> torch.Tensor:
        loss: torch.Tensor
        if self.precision.autocast_dtype is None:
            loss = self.run(**self.inputs).loss
        else:
            with torch.autocast(self.device_type, dtype=self.precision.autocast_dtype):
                loss = self.run(**self.inputs).loss
        return loss

    def before_round(self) -> None:
        self.model.train()
        # Before any step can change them: from here on these weights are not the model's starting point.
        self.loaded.trained = True

    def call(self) -> None:
        loss = self._forward_loss()
        optimizer = self.optimizer
        if self.scaler is not None:
            assert optimizer is not None
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)  # unscales first; skips the step if any gradient is inf/NaN
            self.scaler.update()
            optimizer.zero_grad(set_to_none=True)
        elif optimizer is not None:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            loss.backward()
            self.model.zero_grad(set_to_none=True)
        self.steps += 1
        self.loss = loss.detach()

    def after_round(self) -> None:  # untimed: reading values here costs the measurement nothing
        if self.loss is not None:
            self.losses.append(float(self.loss))
        if self.scaler is not None:
            # GradScaler halves its scale exactly when it skipped the step for overflowing gradients.
            scale = self.scaler.get_scale()
            if scale < self.scale:
                self.skipped += 1
            self.scale = scale

    def _measured_losses(self, warmup_rounds: int) -> list[float]:
        if self.loss is not None and len(self.losses) < self.steps:
            # A call without its after_round (pytest-benchmark's --benchmark-disable makes one bare call): its
            # step is the one that counts.
            return [float(self.loss)]
        return self.losses[warmup_rounds:]

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        measured = self._measured_losses(warmup_rounds)
        bad = [(i, loss) for i, loss in enumerate(measured, 1) if not math.isfinite(loss)]
        if bad:
            index, loss = bad[0]
            raise TrainingDiverged(
                f"training diverged: {self.case.id} measured step {index} of {len(measured)} has loss {loss} "
                f"({len(bad)} non-finite; train_precision {self.precision.name}, {self.optimizer_name} lr "
                f"{LEARNING_RATE}); a benchmark of NaN arithmetic is not a benchmark. Check that the model "
                "trains in --tbench-dtype float32, or use bfloat16"
            )
        changed = (weights_fingerprint(self.params) != self.start).any(dim=1).tolist()
        optimizer_state = self.optimizer.state.values() if self.optimizer is not None else []
        info: dict[str, Any] = {
            "optimizer": self.optimizer_name,
            TRAIN_PRECISION: self.precision.name,
            TRAIN_STEPS: self.steps,
            "gradient_bytes": sum(p.numel() * p.element_size() for p in self.params),
            OPTIMIZER_STATE_BYTES: sum(_tensor_bytes(s.values()) for s in optimizer_state),
            "last_loss": float(self.loss) if self.loss is not None else None,
            # Evidence that the steps trained, judged over all of them (a GradScaler may skip the first).
            "weights_changed": any(changed),
            "changed_tensors_fraction": sum(changed) / len(changed) if changed else 0.0,
        }
        if self.scaler is not None:
            info["amp_skipped_steps"] = self.skipped
        return info

    def _count_pass(self, mark: Mark) -> None:
        # Forward and backward without the optimizer's step, so that the rounds' steps stay the only ones that
        # train; the step is elementwise (about a dozen FLOPs per parameter for AdamW, against 6 per parameter
        # per token for forward and backward), so the count leaves out a share of ~2/tokens.
        self._forward_loss().backward()
        self.model.zero_grad(set_to_none=True)

    def cleanup(self) -> None:  # the next item starts from the model alone
        self.model.zero_grad(set_to_none=True)
        if self.optimizer is not None:
            self.optimizer.state.clear()
        self.loss = None
        self.model.eval()


def _train_inputs(loaded: LoadedModel, case: BenchCase) -> dict[str, Any]:
    """The item's inputs with the head's targets (token ids, class ids, answer spans: models/families.py)
    beside them, on the inputs' device."""
    made = make_inputs(loaded.config, case.batch_size, case.seq_len, case.device)
    device = next(iter(made.values())).device
    targets = family_of(loaded.config).train_inputs(loaded.config, case.head, made, inputs_generator())
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in targets.items()
    }


SCENARIO = Scenario(
    "train",
    lambda case: case.seq_len,
    lambda loaded, case, settings: TrainWork(loaded, case, settings.optimizer),
    variant_reason=all_variants,
)
