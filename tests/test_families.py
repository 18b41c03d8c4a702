"""Model families (vision, CLIP, Whisper, wav2vec2, Llava), their inputs and length axis, the task heads, and
the built-in architectures at real sizes (counted on the meta device)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel

from pytest_tbench.measure.work import Work
from pytest_tbench.models.families import WHISPER_DECODER_TOKENS, family_of, flop_tokens
from pytest_tbench.models.flops import matmul_parameters
from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.models.loading import (
    LoadedModel,
    ModelCache,
    ModelKey,
    head_unsupported_reason,
    load_model,
)
from pytest_tbench.models.registry import resolve
from pytest_tbench.plugin.hooks import _skip_reason
from pytest_tbench.scenarios.forward import forward_work
from pytest_tbench.scenarios.generate import GenerateWork
from pytest_tbench.scenarios.train import TrainWork
from pytest_tbench.settings.cases import BenchCase, build_cases
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.generate import GenerateSettings

from .conftest import run_json


def _loaded(spec: str, head: str = "base", train: bool = False) -> LoadedModel:
    return load_model(resolve(spec), ModelKey(spec, head, "cpu", "float32", train=train))


def _case(mode: str, spec: str, head: str, batch: int, seq: int, **kw: Any) -> BenchCase:
    config = resolve(spec).load_config()
    return BenchCase(
        mode, spec, head, batch, seq, "cpu", "float32", media=family_of(config).media(config), **kw
    )


def _rounds(work: Work, rounds: int = 1) -> dict[str, Any]:
    for _ in range(rounds):
        work.before_round()
        work.call()
        work.after_round()
    info = work.metrics(0)
    work.cleanup()
    return info


# spec: the family, and the inputs (name: shape) for batch 2 x seq_len 8.
INPUTS = {
    "tiny-vit": ("vision", {"pixel_values": (2, 3, 32, 32)}),
    "tiny-clip": (
        "dual-encoder",
        {"input_ids": (2, 8), "attention_mask": (2, 8), "pixel_values": (2, 3, 32, 32)},
    ),
    # Whisper takes exactly 2 x max_source_positions mel frames (2 x 32 in tiny-whisper).
    "tiny-whisper": (
        "speech-seq2seq",
        {"input_features": (2, 16, 64), "decoder_input_ids": (2, WHISPER_DECODER_TOKENS)},
    ),
    "tiny-wav2vec2": ("speech-encoder", {"input_values": (2, 160_000)}),  # 10 s of 16 kHz audio
    # The image's 16 placeholder tokens (4 x 4 patches, no class token), then the 8 text tokens.
    "tiny-llava": (
        "vision-language",
        {"input_ids": (2, 24), "attention_mask": (2, 24), "pixel_values": (2, 3, 32, 32)},
    ),
    "tiny-distilbert": ("text", {"input_ids": (2, 8), "attention_mask": (2, 8)}),
}


@pytest.mark.parametrize("spec", list(INPUTS))
def test_inputs_have_the_models_shapes_and_a_forward_runs(spec: str) -> None:
    family, shapes = INPUTS[spec]
    loaded = _loaded(spec)
    assert family_of(loaded.config).name == family
    inputs = make_inputs(loaded.config, 2, 8, "cpu")
    assert {name: tuple(t.shape) for name, t in inputs.items()} == shapes
    again = make_inputs(loaded.config, 2, 8, "cpu")
    assert all(torch.equal(inputs[name], again[name]) for name in inputs), "seeded: the same every time"
    assert not torch.equal(*next(iter(inputs.values()))[:2]), "a different row per sample"
    with torch.inference_mode():
        loaded.model(**inputs)


def test_llava_inputs_hold_the_image_token_exactly_in_the_image_slots() -> None:
    config = resolve("tiny-llava").load_config()
    ids = make_inputs(config, 2, 40, "cpu")["input_ids"]
    image = config.image_token_id
    assert (ids[:, :16] == image).all() and not (ids[:, 16:] == image).any()


def test_forward_counts_the_positions_the_model_runs_over() -> None:
    # tiny-vit: 4 x 4 patches + the class token per image.
    work = forward_work(_loaded("tiny-vit"), _case("forward", "tiny-vit", "base", 3, 0))
    assert (work.samples, work.tokens) == (3, 3 * 17)
    assert work.flops is not None and work.flops.estimate.tokens == 3 * 17
    work = forward_work(_loaded("tiny-wav2vec2"), _case("forward", "tiny-wav2vec2", "base", 2, 0))
    assert work.tokens == 2 * 499  # 160000 samples through convolutions of 320 samples per frame


@pytest.mark.parametrize(("spec", "seq"), [("tiny-clip", 8), ("tiny-whisper", 0), ("tiny-llava", 8)])
def test_the_flop_estimate_weights_each_tower_by_its_own_positions(spec: str, seq: int) -> None:
    """A CLIP text tower runs over the text, its vision tower over the image, Whisper's decoder over its
    prompt: the per-token estimate agrees with the counted FLOPs (but for attention and the convolutional
    stems, which it leaves out), where all parameters over all positions is 2x or more for CLIP, Whisper."""
    loaded = _loaded(spec, "lm")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        loaded.model(**make_inputs(loaded.config, 2, seq, "cpu"))
    estimate = 2 * matmul_parameters(loaded.model).count * 2 * flop_tokens(loaded.model, loaded.config, seq)
    assert 0.75 < estimate / counter.get_total_flops() < 1.25


def test_whisper_generates_the_new_tokens_from_audio() -> None:
    loaded = _loaded("tiny-whisper", "lm")
    assert type(loaded.model).__name__ == "WhisperForConditionalGeneration"
    case = _case("generate", "tiny-whisper", "lm", 2, 0, new_tokens=3)
    info = _rounds(GenerateWork(loaded, case, GenerateSettings(new_tokens=3)), rounds=2)
    assert info["generated_tokens_per_round"] == 2 * 3
    # The prefill is the encoder's window (32 positions), not the empty token axis.
    assert info["prefill_tokens_per_round"] == 2 * 32


def test_llava_generates_from_image_and_text() -> None:
    loaded = _loaded("tiny-llava", "lm")
    case = _case("generate", "tiny-llava", "lm", 2, 8, new_tokens=3)
    info = _rounds(GenerateWork(loaded, case, GenerateSettings(new_tokens=3)))
    assert info["generated_tokens_per_round"] == 2 * 3
    assert info["prefill_tokens_per_round"] == 2 * (16 + 8)


@pytest.mark.parametrize(
    ("spec", "head", "outputs"),
    [
        ("tiny-bert", "sequence-classification", {"logits": (2, 2)}),
        ("tiny-distilbert", "token-classification", {"logits": (2, 8, 2)}),
        ("tiny-bert", "question-answering", {"start_logits": (2, 8), "end_logits": (2, 8)}),
        ("tiny-vit", "image-classification", {"logits": (2, 2)}),
    ],
)
def test_heads_give_their_output_shapes_and_train(
    spec: str, head: str, outputs: dict[str, tuple[int, ...]]
) -> None:
    loaded = _loaded(spec, head)
    with torch.inference_mode():
        out = loaded.model(**make_inputs(loaded.config, 2, 8, "cpu"))
    assert {name: tuple(out[name].shape) for name in outputs} == outputs
    # Train: the head's targets (class ids, answer spans) make a loss, and a step trains.
    trained = _loaded(spec, head, train=True)
    info = _rounds(TrainWork(trained, _case("train", spec, head, 2, 8), "sgd"))
    assert info["weights_changed"] and info["last_loss"] > 0


@pytest.mark.parametrize("spec", ["tiny-vit", "tiny-clip", "tiny-whisper", "tiny-wav2vec2", "tiny-llava"])
def test_each_family_trains_with_its_own_head(spec: str) -> None:
    loaded = _loaded(spec, "lm", train=True)
    case = _case("train", spec, "lm", 2, 0 if family_of(loaded.config).token_axis is False else 8)
    info = _rounds(TrainWork(loaded, case, "sgd"))
    assert info["weights_changed"] and info["last_loss"] > 0


def test_a_head_the_architecture_lacks_is_named_with_it() -> None:
    vit = resolve("tiny-vit").load_config()
    reason = head_unsupported_reason("tiny-vit", "question-answering", vit)
    assert reason is not None
    assert "'question-answering'" in reason and "tiny-vit (vit, ViTConfig)" in reason
    assert "image-classification" in reason, "it lists the heads the architecture has"
    bert = resolve("tiny-bert").load_config()
    assert head_unsupported_reason("tiny-bert", "question-answering", bert) is None
    assert "'image-classification'" in str(head_unsupported_reason("tiny-bert", "image-classification", bert))


def test_ids_and_the_length_axis_per_family() -> None:
    config = TBenchConfig.of(
        models=("tiny-gpt2", "tiny-vit", "tiny-whisper", "tiny-wav2vec2", "tiny-clip", "no/such-model"),
        batch_sizes=(1,),
        seq_lens=(8, 16),
        devices=("cpu",),
    )
    ids = [case.id for case in build_cases(config, "forward", "base", ModelCache({}).config)]
    assert ids == [
        "tiny-gpt2-b1-s8-cpu-float32",  # text: as before
        "tiny-gpt2-b1-s16-cpu-float32",
        "tiny-vit-b1-img32-cpu-float32",  # one item per batch: the token axis means nothing for an image
        "tiny-whisper-b1-audio0.64s-cpu-float32",  # the model's fixed window
        "tiny-wav2vec2-b1-audio10s-cpu-float32",
        "tiny-clip-b1-s8-img32-cpu-float32",  # text tokens on the axis, and the image
        "tiny-clip-b1-s16-img32-cpu-float32",
        "no/such-model-b1-s8-cpu-float32",  # an unreadable config keeps the text axis, to fail with its hint
        "no/such-model-b1-s16-cpu-float32",
    ]


def test_skips_read_the_family() -> None:
    models = ModelCache({})
    settings = TBenchConfig.of(max_batch_input_product=100)
    # CLIP's text tower has 77 positions.
    clip = _case("forward", "tiny-clip", "base", 1, 96)
    assert (
        _skip_reason(clip, TBenchConfig(), models) == "input length 96 exceeds tiny-clip's max positions (77)"
    )
    # An image counts as the positions its encoder runs over: 17 per tiny-vit image.
    vit = _case("forward", "tiny-vit", "base", 8, 0)
    assert _skip_reason(vit, settings, models) == (
        "batch 8 x img32 (17 positions per sample) = 136 exceeds --tbench-max-batch-input-product 100"
    )
    assert _skip_reason(_case("forward", "tiny-clip", "base", 1, 90), settings, models) == (
        "batch 1 x input length 90 + img32 (107 positions per sample) = 107 exceeds "
        "--tbench-max-batch-input-product 100"
    )
    # Llava's prompt holds the image's 16 tokens before the text.
    llava = _case("generate", "tiny-llava", "lm", 1, 200, new_tokens=64)
    assert _skip_reason(llava, TBenchConfig(), models) == (
        "input length 200 + 16 positions of its img32 input + 64 new tokens exceeds tiny-llava's max "
        "positions (256)"
    )
    assert "no generate" in str(
        _skip_reason(_case("generate", "tiny-vit", "lm", 1, 0, new_tokens=4), settings, models)
    )
    vit_qa = _case("forward", "tiny-vit", "question-answering", 1, 0)
    assert "no 'question-answering' head" in str(_skip_reason(vit_qa, settings, models))


# Published parameter counts of the base models (AutoModel, no task head).
PARAMETERS = {
    "distilbert": 66_362_880,
    "bert-large": 335_141_888,
    "roberta-large": 355_359_744,
    "vit-base": 86_389_248,
    "clip-vit-b-32": 151_277_313,
    "whisper-tiny": 37_760_640,
    "wav2vec2-base": 94_371_712,
    "llama-3.2-1b": 1_235_814_400,
    "qwen2.5-0.5b": 494_032_768,
    "opt-6.7b": 6_658_473_984,
    "mistral-7b": 7_110_660_096,  # 7.24B with its untied LM head (32000 x 4096)
}


@pytest.mark.parametrize("spec", list(PARAMETERS))
def test_real_size_builtins_have_the_published_parameter_counts(spec: str) -> None:
    with torch.device("meta"):  # no memory: the 7B shapes included
        model = AutoModel.from_config(resolve(spec).load_config())
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[spec]


VISION_AUDIO_BENCH = """
import pytest

def test_forward(tbench):
    tbench.forward()

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""


def test_vision_and_whisper_items_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=VISION_AUDIO_BENCH)
    models = ("--tbench-models", "tiny-vit,tiny-whisper", "--tbench-batch-sizes", "2")
    sweep = ("--tbench-seq-lens", "8,16", "--tbench-new-tokens", "3", "--tbench-rounds", "1")
    result, data = run_json(
        pytester, *models, *sweep, "--tbench-warmup", "0", "-rs", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*tiny-vit (vit) is encoder-only: it has no generate*"])
    by_id = {b["param"]: b for b in data["benchmarks"]}
    assert set(by_id) == {
        "tiny-vit-b2-img32-cpu-float32",
        "tiny-whisper-b2-audio0.64s-cpu-float32",
        "tiny-whisper-b2-audio0.64s-n3-cpu-float32",
    }
    vit = by_id["tiny-vit-b2-img32-cpu-float32"]
    assert vit["params"]["tbench_case"]["media"] == "img32"
    assert vit["params"]["tbench_case"]["seq_len"] == 0
    assert vit["extra_info"]["tokens_per_call"] == 2 * 17
    assert by_id["tiny-whisper-b2-audio0.64s-n3-cpu-float32"]["extra_info"]["generated_tokens_per_round"] == 6
