"""Token ids made directly: exact shape, inside the vocabulary, a different row per sample, seeded."""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

INPUTS_SEED = 1234


def vocab_size(config: PretrainedConfig) -> int:
    size = getattr(config, "vocab_size", None)
    if not isinstance(size, int) or size < 2:
        raise ValueError(
            f"{type(config).__name__} has no usable vocab_size ({size!r}); cannot make token ids"
        )
    return size


def make_inputs(
    config: PretrainedConfig, batch_size: int, seq_len: int, device: str
) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of shape (batch_size, seq_len) on ``device``."""
    vocab = vocab_size(config)
    generator = torch.Generator().manual_seed(INPUTS_SEED)
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=generator)
    # Random rows almost never coincide; the first column makes it certain while the vocabulary allows.
    ids[:, 0] = (ids[0, 0] + torch.arange(batch_size)) % vocab
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids.clone()
    return {name: tensor.to(device) for name, tensor in inputs.items()}
