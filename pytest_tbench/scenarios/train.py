"""Training: one optimizer step per call (forward with labels, backward, step, zero_grad).

The model is put in train mode for the item and back in eval mode after it; its optimizer is made per item and
dropped with the item, and gradients are freed (``set_to_none``), so no item inherits another's state.
"""

from __future__ import annotations

from typing import Any

import torch

from ..cases import BenchCase
from ..inputs import make_inputs
from ..models.loading import LoadedModel
from .base import Work

LEARNING_RATE = 1e-5


def make_optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer | None:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=LEARNING_RATE)
    if name == "sgd":
        return torch.optim.SGD(params, lr=LEARNING_RATE)
    return None  # "none": forward and backward only


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def train_work(loaded: LoadedModel, case: BenchCase, optimizer_name: str) -> Work:
    model = loaded.model
    inputs: dict[str, Any] = dict(make_inputs(loaded.config, case.batch_size, case.seq_len, case.device))
    inputs.pop("decoder_input_ids", None)  # with labels, encoder-decoders shift them into decoder inputs
    inputs["labels"] = inputs["input_ids"].clone()
    params = [p for p in model.parameters() if p.requires_grad]
    state: dict[str, Any] = {"steps": 0, "loss": None}
    optimizer = make_optimizer(optimizer_name, params)

    def before_round() -> None:
        model.train()

    def call() -> None:
        loss = model(**inputs).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)
        state["steps"] += 1
        state["loss"] = loss.detach()

    def metrics(warmup_rounds: int) -> dict[str, Any]:
        optimizer_state = optimizer.state.values() if optimizer is not None else []
        return {
            "optimizer": optimizer_name,
            "train_steps": state["steps"],
            "gradient_bytes": sum(p.numel() * p.element_size() for p in params),
            "optimizer_state_bytes": sum(_tensor_bytes(s.values()) for s in optimizer_state),
            "last_loss": float(state["loss"]) if state["loss"] is not None else None,
        }

    def cleanup() -> None:  # the next item starts from the model alone
        model.zero_grad(set_to_none=True)
        if optimizer is not None:
            optimizer.state.clear()
        state["loss"] = None
        model.eval()

    return Work(
        call,
        samples=case.batch_size,
        tokens=case.batch_size * case.seq_len,
        before_round=before_round,
        metrics=metrics,
        cleanup=cleanup,
    )
