"""Model families: what an architecture takes as input, made from its config alone (never a dataset or the
network, always seeded), and what the sweep's length axis means for it.

The length axis (``--tbench-seq-lens``, ``Case.seq_len``) counts text tokens. A family whose input has no
text tokens (an image, a clip of audio) does not expand it: its items have ``seq_len`` 0 and name their fixed
input in ``Case.media`` instead (``img224``, ``audio30s``), which the item id shows. Families:

- ``text``: token ids (and decoder ids for encoder-decoders); the length axis is the input length.
- ``vision`` (ViT, the CLIP vision tower): ``pixel_values`` at the config's image size and channels.
- ``dual-encoder`` (CLIP): text tokens on the length axis (capped by the text tower's positions), an image.
- ``speech-seq2seq`` (Whisper): ``input_features`` of exactly the model's window (2 x max_source_positions mel
  frames: 30 s for the released checkpoints; Whisper accepts no other length), plus a decoder prompt of
  ``WHISPER_DECODER_TOKENS``; it generates.
- ``speech-encoder`` (wav2vec2 and kin sharing its convolutional feature encoder): ``input_values``, raw
  16 kHz audio of ``SPEECH_ENCODER_AUDIO_S`` seconds.
- ``vision-language`` (Llava): the image's placeholder tokens, then text tokens on the length axis, plus the
  image; it generates.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForCTC,
    AutoModelForImageClassification,
    AutoModelForImageTextToText,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSpeechSeq2Seq,
    PretrainedConfig,
)

from pytest_tbench.models.architecture import is_encoder_only, max_positions
from pytest_tbench.models.flops import matmul_parameters

INPUTS_SEED = 1234

SAMPLE_RATE_HZ = 16_000  # what the speech checkpoints were trained on
WHISPER_HOP_S = 0.01  # Whisper's feature extractor: one mel frame per 160 samples at 16 kHz
# Whisper's decoder prompt before the first text token: <|startoftranscript|><|lang|><|task|><|notimestamps|>.
# A forward item is the prefill of a transcription: the encoder over the window, the decoder over the prompt.
WHISPER_DECODER_TOKENS = 4
# A speech encoder accepts any length; 10 s is a typical utterance (LibriSpeech's average is ~12 s). The
# sweep's token lengths mean nothing for raw audio, so the window is fixed and shown in the id.
SPEECH_ENCODER_AUDIO_S = 10
# CTC targets for a train item: one character per four encoder frames (~12 characters/s of speech at
# wav2vec2's 20 ms frames), comfortably within the frames CTC needs.
CTC_FRAMES_PER_LABEL = 4


def vocab_size(config: PretrainedConfig) -> int:
    size = getattr(config, "vocab_size", None)
    if not isinstance(size, int) or size < 2:
        raise ValueError(
            f"{type(config).__name__} has no usable vocab_size ({size!r}); cannot make token ids"
        )
    return size


def token_ids(vocab: int, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Token ids of exact shape, inside the vocabulary, a different row per sample."""
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=generator)
    if seq_len:
        # Random rows almost never coincide; the first column makes it certain while the vocabulary allows.
        ids[:, 0] = (ids[0, 0] + torch.arange(batch_size)) % vocab
    return ids


def _side(value: Any) -> tuple[int, int]:
    """An image size as (height, width): configs give an int or a pair."""
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def image_shape(vision: PretrainedConfig) -> tuple[int, int, int]:
    height, width = _side(vision.image_size)
    return int(getattr(vision, "num_channels", 3)), height, width


def image_tag(vision: PretrainedConfig) -> str:
    _, height, width = image_shape(vision)
    return f"img{height}" if height == width else f"img{height}x{width}"


def patch_tokens(vision: PretrainedConfig) -> int:
    """Positions a ViT-style encoder runs over: one per patch, plus the class token."""
    _, height, width = image_shape(vision)
    patch = _side(getattr(vision, "patch_size", 1))
    return (height // patch[0]) * (width // patch[1]) + 1


def pixel_values(vision: PretrainedConfig, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    # Normalised pixels (what an image processor hands the model) are roughly standard normal.
    return torch.randn((batch_size, *image_shape(vision)), generator=generator)


def class_ids(config: PretrainedConfig, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, max(int(getattr(config, "num_labels", 2)), 1), shape, generator=generator)


class Family:
    """Text, the default: token ids on the length axis."""

    name = "text"
    token_axis = True  # whether the sweep's length axis (text tokens) is expanded for the family

    def media(self, config: PretrainedConfig) -> str:
        """The input off the token axis as the item id names it ("" for none)."""
        return ""

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        ids = token_ids(vocab_size(config), batch_size, seq_len, generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = ids.clone()
        return inputs

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        """Positions per sample the model runs over: tokens/s and the per-token FLOP estimate count these."""
        return seq_len

    def towers(self, config: PretrainedConfig, seq_len: int) -> tuple[tuple[str, int], ...]:
        """For a model of several towers, each tower (a child of the base model) and the positions per sample
        it runs over, for the per-token FLOP estimate (``flop_tokens``); (): one stack over
        ``sequence_tokens``."""
        return ()

    def head_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        """Positions per sample that the matmul parameters outside the towers (projections, the LM head) run
        over."""
        return self.sequence_tokens(config, seq_len)

    def token_limit(self, config: PretrainedConfig) -> int | None:
        """The most positions the token axis (plus ``extra_positions``) may take; None: nothing limits it."""
        return max_positions(config)

    def extra_positions(self, config: PretrainedConfig) -> int:
        """Positions the family's inputs add to the token axis' (an image's placeholder tokens)."""
        return 0

    def generates(self, config: PretrainedConfig) -> bool:
        return not is_encoder_only(config)

    def generate_output_len(self, config: PretrainedConfig, seq_len: int, new_tokens: int) -> int:
        """The length of generate's output: the prompt for decoders, the start token for encoder-decoders."""
        return (1 if config.is_encoder_decoder else seq_len) + new_tokens

    def prompt_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        """Positions the prefill of a generate request runs over (the KV cache it leaves behind)."""
        return seq_len

    def lm_class(self, config: PretrainedConfig) -> Any:
        """The head the architecture trains with (head ``lm``)."""
        if config.is_encoder_decoder:
            return AutoModelForSeq2SeqLM
        return AutoModelForMaskedLM if is_encoder_only(config) else AutoModelForCausalLM

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        """The inputs with the targets of one training step for the head (class ids, spans or the tokens)."""
        ids = inputs["input_ids"]
        batch, seq = ids.shape
        if head == "sequence-classification":
            return {**inputs, "labels": class_ids(config, (batch,), generator)}
        if head == "token-classification":
            return {**inputs, "labels": class_ids(config, (batch, seq), generator)}
        if head == "question-answering":
            start = torch.randint(0, seq, (batch,), generator=generator)
            span = torch.randint(0, 8, (batch,), generator=generator)  # answers of up to 8 tokens
            end = torch.clamp(start + span, max=seq - 1)
            return {**inputs, "start_positions": start, "end_positions": end}
        # Language modelling: the tokens are their own targets; with labels an encoder-decoder shifts them
        # into its decoder inputs itself.
        found = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
        return {**found, "labels": ids.clone()}


class VisionFamily(Family):
    name = "vision"
    token_axis = False

    def media(self, config: PretrainedConfig) -> str:
        return image_tag(config)

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return {"pixel_values": pixel_values(config, batch_size, generator)}

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return patch_tokens(config)

    def token_limit(self, config: PretrainedConfig) -> int | None:
        return None

    def generates(self, config: PretrainedConfig) -> bool:
        return False

    def lm_class(self, config: PretrainedConfig) -> Any:
        return AutoModelForImageClassification  # an image encoder trains as a classifier

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        batch = inputs["pixel_values"].shape[0]
        return {**inputs, "labels": class_ids(config, (batch,), generator)}


class DualEncoderFamily(Family):
    name = "dual-encoder"

    def media(self, config: PretrainedConfig) -> str:
        return image_tag(config.vision_config)

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        ids = token_ids(vocab_size(config.text_config), batch_size, seq_len, generator)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": pixel_values(config.vision_config, batch_size, generator),
        }

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return seq_len + patch_tokens(config.vision_config)  # the text tower's positions, then the image's

    def towers(self, config: PretrainedConfig, seq_len: int) -> tuple[tuple[str, int], ...]:
        return ("text_model", seq_len), ("vision_model", patch_tokens(config.vision_config))

    def head_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return 1  # the projections map each tower's pooled output: one position per sample

    def token_limit(self, config: PretrainedConfig) -> int | None:
        return max_positions(config.text_config)

    def generates(self, config: PretrainedConfig) -> bool:
        return False

    def lm_class(self, config: PretrainedConfig) -> Any:
        return AutoModel  # CLIPModel: it trains on its own contrastive loss

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        # The batch's texts and images are each other's matches: CLIP's contrastive loss needs no labels.
        return {**inputs, "return_loss": True}


class SpeechSeq2SeqFamily(Family):
    name = "speech-seq2seq"
    token_axis = False

    def frames(self, config: PretrainedConfig) -> int:
        return 2 * int(config.max_source_positions)  # the encoder's convolutions halve them

    def media(self, config: PretrainedConfig) -> str:
        return f"audio{self.frames(config) * WHISPER_HOP_S:g}s"

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        features = torch.randn(
            (batch_size, int(config.num_mel_bins), self.frames(config)), generator=generator
        )
        decoder = token_ids(vocab_size(config), batch_size, WHISPER_DECODER_TOKENS, generator)
        start = getattr(config, "decoder_start_token_id", None)
        if isinstance(start, int):
            decoder[:, 0] = start
        return {"input_features": features, "decoder_input_ids": decoder}

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return int(config.max_source_positions) + WHISPER_DECODER_TOKENS

    def towers(self, config: PretrainedConfig, seq_len: int) -> tuple[tuple[str, int], ...]:
        return ("encoder", int(config.max_source_positions)), ("decoder", WHISPER_DECODER_TOKENS)

    def head_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return WHISPER_DECODER_TOKENS  # the LM head projects the decoder's positions

    def token_limit(self, config: PretrainedConfig) -> int | None:
        return int(config.max_target_positions)

    def extra_positions(self, config: PretrainedConfig) -> int:
        return WHISPER_DECODER_TOKENS

    def generates(self, config: PretrainedConfig) -> bool:
        return True

    def generate_output_len(self, config: PretrainedConfig, seq_len: int, new_tokens: int) -> int:
        return new_tokens  # Whisper's generate returns the new tokens alone, its decoder prompt stripped

    def prompt_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return int(config.max_source_positions)  # the encoder's positions, which every step attends to

    def lm_class(self, config: PretrainedConfig) -> Any:
        return AutoModelForSpeechSeq2Seq

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        found = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
        return {**found, "labels": inputs["decoder_input_ids"].clone()}


class SpeechEncoderFamily(Family):
    name = "speech-encoder"
    token_axis = False

    def media(self, config: PretrainedConfig) -> str:
        return f"audio{SPEECH_ENCODER_AUDIO_S}s"

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        samples = SPEECH_ENCODER_AUDIO_S * SAMPLE_RATE_HZ
        return {"input_values": torch.randn((batch_size, samples), generator=generator)}

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        """Encoder frames: the audio through the feature encoder's strided convolutions (no padding)."""
        length = SPEECH_ENCODER_AUDIO_S * SAMPLE_RATE_HZ
        for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
            length = (length - kernel) // stride + 1
        return length

    def token_limit(self, config: PretrainedConfig) -> int | None:
        return None

    def generates(self, config: PretrainedConfig) -> bool:
        return False

    def lm_class(self, config: PretrainedConfig) -> Any:
        return AutoModelForCTC

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        batch = inputs["input_values"].shape[0]
        length = max(self.sequence_tokens(config, 0) // CTC_FRAMES_PER_LABEL, 1)
        # Id 0 is CTC's blank (the pad token) in wav2vec2's vocabularies: targets are characters.
        labels = torch.randint(1, vocab_size(config), (batch, length), generator=generator)
        return {**inputs, "labels": labels}


class VisionLanguageFamily(Family):
    """Llava's layout: the image's placeholder tokens (one per image feature), then the text."""

    name = "vision-language"

    def image_token(self, config: PretrainedConfig) -> int:
        return int(config.image_token_id)

    def image_tokens(self, config: PretrainedConfig) -> int:
        # The "default" strategy drops the vision tower's class token; "full" keeps it.
        patches = patch_tokens(config.vision_config)
        return patches if config.vision_feature_select_strategy == "full" else patches - 1

    def media(self, config: PretrainedConfig) -> str:
        return image_tag(config.vision_config)

    def inputs(
        self, config: PretrainedConfig, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        vocab = vocab_size(config.text_config)
        text = token_ids(vocab, batch_size, seq_len, generator)
        image = self.image_token(config)
        text = torch.where(text == image, (text + 1) % vocab, text)  # only the image's slots hold its token
        ids = torch.cat([torch.full((batch_size, self.image_tokens(config)), image), text], dim=1)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": pixel_values(config.vision_config, batch_size, generator),
        }

    def sequence_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return self.image_tokens(config) + seq_len  # the language model's positions

    def towers(self, config: PretrainedConfig, seq_len: int) -> tuple[tuple[str, int], ...]:
        return (
            ("vision_tower", patch_tokens(config.vision_config)),
            ("multi_modal_projector", self.image_tokens(config)),
            ("language_model", self.image_tokens(config) + seq_len),
        )

    def token_limit(self, config: PretrainedConfig) -> int | None:
        return max_positions(config.text_config)

    def extra_positions(self, config: PretrainedConfig) -> int:
        return self.image_tokens(config)

    def generates(self, config: PretrainedConfig) -> bool:
        return True

    def generate_output_len(self, config: PretrainedConfig, seq_len: int, new_tokens: int) -> int:
        return self.image_tokens(config) + seq_len + new_tokens

    def prompt_tokens(self, config: PretrainedConfig, seq_len: int) -> int:
        return self.image_tokens(config) + seq_len

    def lm_class(self, config: PretrainedConfig) -> Any:
        return AutoModelForImageTextToText

    def train_inputs(
        self, config: PretrainedConfig, head: str, inputs: dict[str, Any], generator: torch.Generator
    ) -> dict[str, Any]:
        labels = inputs["input_ids"].clone()
        labels[labels == self.image_token(config)] = -100  # the image's slots are not text to predict
        return {**inputs, "labels": labels}


TEXT = Family()
VISION = VisionFamily()
DUAL_ENCODER = DualEncoderFamily()
SPEECH_SEQ2SEQ = SpeechSeq2SeqFamily()
SPEECH_ENCODER = SpeechEncoderFamily()
VISION_LANGUAGE = VisionLanguageFamily()
FAMILIES = (TEXT, VISION, DUAL_ENCODER, SPEECH_SEQ2SEQ, SPEECH_ENCODER, VISION_LANGUAGE)


def family_of(config: PretrainedConfig) -> Family:
    """The family of a config, read from what its inputs need: sub-configs, image and audio attributes."""
    has = lambda *names: all(hasattr(config, name) for name in names)  # noqa: E731
    if config.model_type == "llava":
        return VISION_LANGUAGE
    if has("text_config", "vision_config"):
        return DUAL_ENCODER
    if has("num_mel_bins", "max_source_positions") and getattr(config, "is_encoder_decoder", False):
        return SPEECH_SEQ2SEQ
    # wav2vec2, HuBERT, WavLM, data2vec-audio ...: the convolutional feature encoder over raw audio.
    if has("conv_kernel", "conv_stride", "feat_extract_norm"):
        return SPEECH_ENCODER
    if has("image_size", "num_channels") and not hasattr(config, "vocab_size"):
        return VISION
    return TEXT


def flop_tokens(model: torch.nn.Module, config: PretrainedConfig, seq_len: int) -> int:
    """Positions per sample for the per-token FLOP estimate (2 or 6 FLOPs per matmul parameter per position):
    for a model of several towers, their positions weighted by each tower's matmul parameters, so that a
    CLIP text tower's parameters count over the text and the vision tower's over the image; otherwise the
    positions the model runs over."""
    family = family_of(config)
    towers = family.towers(config, seq_len)
    total = matmul_parameters(model).count
    if not towers or not total:
        return family.sequence_tokens(config, seq_len)
    base = getattr(model, "base_model", model)
    parts = [(matmul_parameters(base.get_submodule(name)).count, tokens) for name, tokens in towers]
    rest = total - sum(count for count, _ in parts)
    weighted = sum(count * tokens for count, tokens in parts) + rest * family.head_tokens(config, seq_len)
    return max(round(weighted / total), 1)
