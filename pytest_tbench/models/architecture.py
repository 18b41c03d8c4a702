"""Facts about an architecture read from its config alone, before any weights exist."""

from __future__ import annotations

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)


def is_encoder_only(config: PretrainedConfig) -> bool:
    """BERT and kin: no decoder, so no generation. Families with a causal-LM class that is only a decoder
    variant of an encoder (BertLMHeadModel) count as encoder-only unless the config says ``is_decoder``."""
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        return False
    model_type = getattr(config, "model_type", "")
    return (
        model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence the model's position embeddings allow; None where nothing limits it (T5)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
