"""Generation through the real ``model.generate`` path: time to first token, per-token decode, total.

Every round generates exactly ``new_tokens`` tokens for every row (``min_new_tokens = max_new_tokens``, so EOS
cannot stop it early); the count is checked after each round. A logits processor stamps each step: it runs
once per step, right after that step's forward pass, before the token is chosen.
"""

from __future__ import annotations

import statistics
from typing import Any, cast

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PretrainedConfig

from ..cases import BenchCase
from ..generation import GenerateSettings
from ..inputs import make_inputs
from ..models.architecture import is_encoder_only
from ..models.loading import LoadedModel
from ..trackers.steps import RoundTiming, StepClock
from .base import Work


class TokenCountError(AssertionError):
    """A round generated another number of tokens than asked: its tokens/s would be wrong."""


def unsupported_reason(spec: str, config: PretrainedConfig) -> str | None:
    if not is_encoder_only(config):
        return None
    return f"{spec} ({config.model_type}) is encoder-only: it has no generate; use it in forward or train"


class _StepStamp(LogitsProcessor):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.clock.stamp()
        return scores


def _quantile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def generate_metrics(case: BenchCase, rounds: list[RoundTiming]) -> dict[str, Any]:
    """Per-round means (so that ttft + decode = total holds exactly) and per-step latency over all steps."""
    batch, new = case.batch_size, case.new_tokens
    ttft = [r.first_step_s for r in rounds]
    total = [r.total_s for r in rounds]
    decode = [t - p for t, p in zip(total, ttft, strict=True)]
    steps = [interval for r in rounds for interval in r.step_intervals_s]
    ttft_mean, decode_mean, total_mean = (
        statistics.fmean(ttft),
        statistics.fmean(decode),
        statistics.fmean(total),
    )
    info: dict[str, Any] = {
        "new_tokens": new,
        "measured_rounds": len(rounds),
        "ttft_mean_s": ttft_mean,
        "ttft_median_s": statistics.median(ttft),
        "ttft_per_round_s": ttft,  # raw, so that a later comparison can test significance
        "decode_time_mean_s": decode_mean,
        "decode_time_median_s": statistics.median(decode),
        "total_time_mean_s": total_mean,
        "total_time_median_s": statistics.median(total),
        "prefill_tokens_per_round": batch * case.seq_len,
        "decode_tokens_per_round": batch * (new - 1),
        "generated_tokens_per_round": batch * new,
        "decode_token_latency_count": len(steps),
        "prefill_tokens_per_s": batch * case.seq_len / ttft_mean,
        "e2e_tokens_per_s": batch * new / total_mean,
    }
    if steps:
        info.update(
            decode_token_latency_mean_s=statistics.fmean(steps),
            decode_token_latency_median_s=statistics.median(steps),
            decode_token_latency_p90_s=_quantile(steps, 90),
            decode_token_latency_p99_s=_quantile(steps, 99),
            decode_tokens_per_s=batch * (new - 1) / decode_mean,
        )
    return info


def pooled_metrics(case: BenchCase, rounds: list[RoundTiming]) -> dict[str, Any]:
    """The metrics of measured rounds, from one process or pooled from several; none without rounds
    (--benchmark-disable skips the per-round hooks)."""
    return generate_metrics(case, rounds) if rounds else {}


def generate_work(loaded: LoadedModel, case: BenchCase, settings: GenerateSettings) -> Work:
    generate, config = cast(Any, loaded.model).generate, loaded.config
    inputs = make_inputs(config, case.batch_size, case.seq_len, case.device)
    inputs.pop("decoder_input_ids", None)  # generate starts the decoder itself
    kwargs = settings.generate_kwargs(config)
    # The output holds the prompt for decoder-only models, the decoder start token for encoder-decoders.
    expected_len = (1 if config.is_encoder_decoder else case.seq_len) + case.new_tokens
    rounds: list[RoundTiming] = []
    state: dict[str, Any] = {}

    def before_round() -> None:
        state["clock"] = StepClock(case.device)
        state["processors"] = LogitsProcessorList([_StepStamp(state["clock"])])
        torch.manual_seed(len(rounds))  # sampled runs repeat from one session to the next

    def call() -> None:
        clock = state["clock"]
        clock.stamp()
        with torch.inference_mode():
            state["output"] = generate(**inputs, **kwargs, logits_processor=state["processors"])
        clock.stamp()

    def after_round() -> None:
        output, timing = state.pop("output"), state["clock"].timing()
        if tuple(output.shape) != (case.batch_size, expected_len) or timing.steps != case.new_tokens:
            raise TokenCountError(
                f"{case.model}: asked for {case.new_tokens} new tokens per row x batch {case.batch_size}, "
                f"got output shape {tuple(output.shape)} (expected {(case.batch_size, expected_len)}) over "
                f"{timing.steps} generation steps; tokens/s would be wrong, so this item fails"
            )
        rounds.append(timing)

    def metrics(warmup_rounds: int) -> dict[str, Any]:
        return pooled_metrics(case, rounds[warmup_rounds:])

    def records(warmup_rounds: int) -> list[Any]:
        return rounds[warmup_rounds:]

    return Work(
        call,
        samples=case.batch_size,
        tokens=case.batch_size * case.new_tokens,
        before_round=before_round,
        after_round=after_round,
        metrics=metrics,
        records=records,
    )
