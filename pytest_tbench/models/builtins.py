"""The built-in architectures: configs of published models' shapes (random weights, no network), and tiny
shapes for the plugin's own tests. Where the Hub id of the shape differs from the short name, a comment says
it; parameter counts are those of the base model (``AutoModel``), checked in tests/test_families.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    BertConfig,
    CLIPConfig,
    DistilBertConfig,
    GPT2Config,
    LlamaConfig,
    LlavaConfig,
    MistralConfig,
    OPTConfig,
    PretrainedConfig,
    Qwen2Config,
    RobertaConfig,
    T5Config,
    ViTConfig,
    Wav2Vec2Config,
    WhisperConfig,
)

ConfigFactory = Callable[[], PretrainedConfig]


def _smollm_135m() -> LlamaConfig:
    # The shape of HuggingFaceTB/SmolLM-135M.
    return LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def _bert_large() -> BertConfig:
    return BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)


def _roberta_large() -> RobertaConfig:  # FacebookAI/roberta-large
    return RobertaConfig(
        vocab_size=50265,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,  # 512 tokens: RoBERTa's positions start after the padding index
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )


def _vit_base() -> ViTConfig:  # google/vit-base-patch16-224
    config = ViTConfig(image_size=224, patch_size=16)
    config.num_labels = 1000  # an ImageNet-1k classifier
    return config


def _clip_vit_b_32() -> CLIPConfig:  # openai/clip-vit-base-patch32
    return CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 512,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "intermediate_size": 2048,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=512,
    )


def _whisper_tiny() -> WhisperConfig:  # openai/whisper-tiny
    return WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        d_model=384,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=6,
        decoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
        max_source_positions=1500,  # 3000 mel frames: 30 s
        max_target_positions=448,
        pad_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50257,
        decoder_start_token_id=50258,
    )


def _wav2vec2_base() -> Wav2Vec2Config:  # facebook/wav2vec2-base: the defaults are its shape
    return Wav2Vec2Config()


def _llama_3_2_1b() -> LlamaConfig:  # meta-llama/Llama-3.2-1B
    return LlamaConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=128000,
        eos_token_id=128001,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )


def _qwen2_5_0_5b() -> Qwen2Config:  # Qwen/Qwen2.5-0.5B
    return Qwen2Config(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )


def _opt_6_7b() -> OPTConfig:  # facebook/opt-6.7b
    return OPTConfig(
        vocab_size=50272,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        ffn_dim=16384,
        max_position_embeddings=2048,
        word_embed_proj_dim=4096,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )


def _mistral_7b() -> MistralConfig:  # mistralai/Mistral-7B-v0.1
    return MistralConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        sliding_window=4096,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )


# As in the Hub's t5 configs: generation starts the decoder at the pad token.
_T5_START: dict[str, Any] = {"decoder_start_token_id": 0}

_TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
_TINY_LLAMA: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 256,
}


def _tiny_whisper() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=1000,
        num_mel_bins=16,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=32,  # 64 mel frames: a 0.64 s window
        max_target_positions=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


def _tiny_wav2vec2() -> Wav2Vec2Config:
    # wav2vec2's seven convolutions (320 samples per frame, so 10 s is 499 frames), at 32 channels.
    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=32,
    )


def _tiny_llava() -> LlavaConfig:
    return LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **_TINY_VISION},
        text_config={"model_type": "llama", **_TINY_LLAMA},
        image_token_index=999,  # the text vocabulary's last id
        vision_feature_layer=-1,
    )


BUILTIN_MODELS: dict[str, ConfigFactory] = {
    "gpt2": GPT2Config,  # gpt2-small, 124M parameters
    "bert-base-uncased": BertConfig,  # bert-base, 110M
    "smollm-135m": _smollm_135m,  # a small Llama-style decoder, 135M
    "t5-small": lambda: T5Config(**_T5_START),  # encoder-decoder, 60M; start id as on the Hub
    "distilbert": DistilBertConfig,  # distilbert-base-uncased, 66M
    "bert-large": _bert_large,  # bert-large-uncased, 335M
    "roberta-large": _roberta_large,  # 355M
    "vit-base": _vit_base,  # 86M
    "clip-vit-b-32": _clip_vit_b_32,  # 151M
    "whisper-tiny": _whisper_tiny,  # 38M
    "wav2vec2-base": _wav2vec2_base,  # 94M
    "llama-3.2-1b": _llama_3_2_1b,  # 1.24B
    "qwen2.5-0.5b": _qwen2_5_0_5b,  # 494M
    "opt-6.7b": _opt_6_7b,  # 6.66B: for GPUs
    "mistral-7b": _mistral_7b,  # 7.24B: for GPUs
    # Tiny shapes for the plugin's own tests.
    "tiny-gpt2": lambda: GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=256, bos_token_id=999, eos_token_id=999
    ),
    "tiny-bert": lambda: BertConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=1000,
        max_position_embeddings=256,
    ),
    "tiny-distilbert": lambda: DistilBertConfig(
        n_layers=2, dim=64, n_heads=2, hidden_dim=128, vocab_size=1000, max_position_embeddings=256
    ),
    "tiny-llama": lambda: LlamaConfig(**_TINY_LLAMA),
    "tiny-t5": lambda: T5Config(
        d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32, vocab_size=1000, **_T5_START
    ),
    "tiny-vit": lambda: ViTConfig(**_TINY_VISION),
    "tiny-clip": lambda: CLIPConfig(
        text_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "vocab_size": 1000,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 2,
        },
        vision_config=_TINY_VISION,
        projection_dim=32,
    ),
    "tiny-whisper": _tiny_whisper,
    "tiny-wav2vec2": _tiny_wav2vec2,
    "tiny-llava": _tiny_llava,
}

DEFAULT_MODELS = ("gpt2", "bert-base-uncased", "smollm-135m", "t5-small")
