"""Model inputs made directly from the config: exact shape, a different row per sample, seeded. The single
entry point the scenarios call; what each kind of model takes is its family's (``families.py``)."""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

from pytest_tbench.models.families import INPUTS_SEED, family_of, vocab_size

__all__ = ["INPUTS_SEED", "inputs_generator", "make_inputs", "vocab_size"]


def inputs_generator() -> torch.Generator:
    return torch.Generator().manual_seed(INPUTS_SEED)


def make_inputs(
    config: PretrainedConfig, batch_size: int, seq_len: int, device: str
) -> dict[str, torch.Tensor]:
    """The model's inputs for ``batch_size`` samples on ``device``: for text, ``input_ids`` and
    ``attention_mask`` of shape (batch_size, seq_len); for other families, what their models take."""
    inputs = family_of(config).inputs(config, batch_size, seq_len, inputs_generator())
    return {name: tensor.to(device) for name, tensor in inputs.items()}
