"""Generation through the real ``model.generate`` path: time to first token, per-token decode, total.

Every round generates exactly ``new_tokens`` tokens for every row (``min_new_tokens = max_new_tokens``, so EOS
cannot stop it early); the count is checked after each round. A stopping criterion stamps each step:
generate runs it once per step, after the step's token is chosen and appended to the output, so a stamp marks
the token's existence (the forward pass, logits processing and sampling of that step all come before it).

The model runs from a generation config the plugin builds (``settings/generate.py``), installed as the model's
own for the item: transformers fills whatever a passed config leaves unset from ``model.generation_config``,
so a checkpoint's beams or penalties would otherwise apply. The model's config is put back when the item ends.

Compiled (``--tbench-compile MODE``), generate runs transformers' own path: a static cache and a
``CompileConfig(mode=MODE)`` in the generation config, so that the prefill runs eager and every decode step
runs transformers' compiled call (``get_compiled_call``); ``compiled.py`` keeps the compiling out of
the rounds. Uncompiled, transformers decides by itself, as before (on CUDA it compiles a static cache's decode
step), and ``generate_compiled`` records what it decided.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from transformers import PretrainedConfig, StoppingCriteria, StoppingCriteriaList

from pytest_tbench.core.axes import COMPILE_OFF
from pytest_tbench.core.metric_table import (
    DECODE_TIME_MEAN_S,
    E2E_TOKENS_PER_S,
    TOTAL_TIME_MEAN_S,
    TTFT_MEAN_S,
    TTFT_PER_ROUND_S,
)
from pytest_tbench.measure.trackers.compiles import (
    CompileWatch,
    MeasuredCompileError,
    dynamo_frame_compiles,
    release_generate_state,
)
from pytest_tbench.measure.trackers.steps import RoundTiming, StepClock
from pytest_tbench.measure.work import Work
from pytest_tbench.models.architecture import is_encoder_only
from pytest_tbench.models.families import family_of
from pytest_tbench.models.flops import FlopEstimate, FlopPass, Mark, matmul_parameters
from pytest_tbench.models.inputs import make_inputs
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.scenarios.decode_reads import decode_reads
from pytest_tbench.scenarios.scenario import Scenario
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings
from pytest_tbench.settings.generate import GenerateSettings


class TokenCountError(AssertionError):
    """A round generated another number of tokens than asked: its tokens/s would be wrong."""


@dataclass(frozen=True)
class GenerateRound:
    """One round's record: its step timing, whether transformers ran its compiled decode step in the call, and
    how many frames dynamo compiled during the call (first compiles, recompiles and failed attempts)."""

    timing: RoundTiming
    compiled: bool = False
    compiles: int = 0
    # Positions the prefill ran over, where they are not the case's input length (an image's placeholder
    # tokens, Whisper's encoder window: models/families.py); None: seq_len.
    prompt_tokens: int | None = None


def unsupported_reason(spec: str, config: PretrainedConfig) -> str | None:
    family = family_of(config)
    if family.generates(config):
        return None
    kind = "encoder-only" if is_encoder_only(config) else f"a {family.name} model"
    return f"{spec} ({config.model_type}) is {kind}: it has no generate; use it in forward or train"


class _TokenStamp(StoppingCriteria):
    """Stamps the clock once per generated token and never stops generation."""

    def __init__(self, clock: StepClock, never: torch.Tensor) -> None:
        self.clock = clock
        self.never = never  # made once per item: no allocation inside the timed steps

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.clock.stamp()
        return cast(torch.BoolTensor, self.never)


class _PhaseMark(StoppingCriteria):
    """For the FLOP count: marks the end of prefill at the first step, of a decode step at every later one."""

    def __init__(self, mark: Mark, never: torch.Tensor) -> None:
        self.mark = mark
        self.never = never
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.mark("decode" if self.steps else "prefill")
        self.steps += 1
        return cast(torch.BoolTensor, self.never)


def forward_tokens(batch: int, seq_len: int, new_tokens: int, use_cache: bool) -> int:
    """Tokens a request runs through the model: the prompt, then one per row per later step with a KV cache
    (the last token is never fed back), or the whole sequence so far at every step without one."""
    if use_cache:
        return batch * (seq_len + new_tokens - 1)
    return batch * sum(seq_len + step for step in range(new_tokens))


def _quantile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def timing_metrics(
    case: BenchCase, rounds: list[RoundTiming], prompt_tokens: int | None = None
) -> dict[str, Any]:
    """Per-round means (so that ttft + decode = total holds exactly) and per-step latency over all steps."""
    batch, new = case.batch_size, case.new_tokens
    prompt = case.seq_len if prompt_tokens is None else prompt_tokens
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
        TTFT_MEAN_S: ttft_mean,
        "ttft_median_s": statistics.median(ttft),
        TTFT_PER_ROUND_S: ttft,  # raw, so that a later comparison can test significance
        DECODE_TIME_MEAN_S: decode_mean,
        "decode_time_median_s": statistics.median(decode),
        TOTAL_TIME_MEAN_S: total_mean,
        "total_time_median_s": statistics.median(total),
        "prefill_tokens_per_round": batch * prompt,
        "decode_tokens_per_round": batch * (new - 1),
        "generated_tokens_per_round": batch * new,
        "decode_token_latency_count": len(steps),
        "prefill_tokens_per_s": batch * prompt / ttft_mean,
        E2E_TOKENS_PER_S: batch * new / total_mean,
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


def compile_metrics(case: BenchCase, rounds: list[GenerateRound]) -> dict[str, Any]:
    """Whether the measured rounds ran compiled, checked to be steady: all rounds on the same path and no
    compilation inside them; otherwise the item fails rather than report a half-compiled figure."""
    compiled = [r.compiled for r in rounds]
    compiles = [r.compiles for r in rounds]
    fix = (
        "raise --tbench-warmup so that compiling ends in warm-up, or run items in fresh processes "
        "(--tbench-isolate) so that a long sweep does not reach dynamo's recompile limit "
        f"(torch._dynamo.config.recompile_limit = {torch._dynamo.config.recompile_limit})"
    )
    if any(compiles):
        raise MeasuredCompileError(
            f"{case.model}: dynamo compiled {sum(compiles)} frame(s) during the measured rounds "
            f"(per round: {compiles}); those rounds time compilation, not steady-state generation, so this "
            f"item fails; {fix}"
        )
    if len(set(compiled)) > 1:
        raise MeasuredCompileError(
            f"{case.model}: transformers ran its compiled decode step in {sum(compiled)} of {len(compiled)} "
            f"measured rounds; a half-compiled item is not steady state, so this item fails; {fix}"
        )
    return {"generate_compiled": compiled[0], "generate_recompiles_measured": sum(compiles)}


def generate_metrics(case: BenchCase, rounds: list[GenerateRound]) -> dict[str, Any]:
    timings = [r.timing for r in rounds]
    return {**compile_metrics(case, rounds), **timing_metrics(case, timings, rounds[0].prompt_tokens)}


def pooled_metrics(case: BenchCase, rounds: list[GenerateRound]) -> dict[str, Any]:
    """The metrics of measured rounds, from one process or pooled from several; none without rounds
    (--benchmark-disable skips the per-round hooks)."""
    return generate_metrics(case, rounds) if rounds else {}


def variant_reason(case: BenchCase, settings: RunSettings) -> str | None:
    """Why a compiled generate item cannot run with the session's cache settings (None: it can)."""
    if case.compile == COMPILE_OFF:
        return None
    if not settings.use_cache:
        return (
            f"compile:{case.compile} in generate compiles the decode step over a static KV cache, as "
            "transformers does; --tbench-use-cache false leaves none"
        )
    if settings.cache_implementation not in (None, "static"):
        return (
            f"compile:{case.compile} in generate needs a static KV cache (transformers compiles the decode "
            "step only over a compilable cache), not --tbench-cache-implementation "
            f"{settings.cache_implementation}"
        )
    return None


class GenerateWork(Work):
    """One ``model.generate`` request per call, its steps stamped; each round's record (``GenerateRound``)
    is kept on the work, from which ``metrics`` and ``records`` are made."""

    def __init__(self, loaded: LoadedModel, case: BenchCase, settings: GenerateSettings) -> None:
        model, config = cast(Any, loaded.model), loaded.config
        family = family_of(config)
        settings = replace(settings, compile=case.compile)
        self.model, self.case = model, case
        self.inputs = make_inputs(config, case.batch_size, case.seq_len, case.device)
        self.inputs.pop("decoder_input_ids", None)  # generate starts the decoder itself
        self.prompt = family.prompt_tokens(config, case.seq_len)
        self.model_generation = model.generation_config
        self.recorded = settings.generation_values(config, self.model_generation)
        self.generation_config = settings.generation_config(config, self.model_generation)
        # The output holds the prompt for decoder-only models, the decoder start token for encoder-decoders.
        self.expected_len = family.generate_output_len(config, case.seq_len, case.new_tokens)
        self.never = torch.zeros(case.batch_size, dtype=torch.bool, device=case.device)
        self.rounds: list[GenerateRound] = []
        # The round in progress: its clock and stopping criteria, dynamo's count at its start, its output.
        self.clock = StepClock(case.device)
        self.criteria = StoppingCriteriaList()
        self.compiles_at_round = 0
        self.output: torch.Tensor | None = None

        # For the item only (cleanup restores it): generate fills unset values from the model's config.
        model.generation_config = copy.deepcopy(self.generation_config)
        self.watch = CompileWatch(model)
        self.compiles_at_start = dynamo_frame_compiles()
        matmul = matmul_parameters(model)
        use_cache = self.generation_config.use_cache is not False
        # Facts of the item, not of its rounds: the same in every process that measures it.
        self.reads = decode_reads(
            config.get_text_config(decoder=True),  # a vision-language model's cache is its LM's
            matmul.bytes,
            next(model.parameters()).element_size(),
            case.batch_size,
            self.prompt,
            case.new_tokens,
            use_cache,
        )
        tokens = forward_tokens(case.batch_size, self.prompt, case.new_tokens, use_cache)
        super().__init__(
            samples=case.batch_size,
            tokens=case.batch_size * case.new_tokens,
            flops=FlopPass(self._count_pass, FlopEstimate(2, matmul.count, tokens)),
        )

    def before_round(self) -> None:
        self.clock = StepClock(self.case.device)
        self.criteria = StoppingCriteriaList([_TokenStamp(self.clock, self.never)])
        self.compiles_at_round = dynamo_frame_compiles()
        self.watch.take()  # forget any call outside the rounds
        torch.manual_seed(len(self.rounds))  # sampled runs repeat from one session to the next

    def call(self) -> None:
        self.clock.stamp()
        with torch.inference_mode():
            self.output = self.model.generate(
                **self.inputs, generation_config=self.generation_config, stopping_criteria=self.criteria
            )
        self.clock.stamp()

    def after_round(self) -> None:
        case = self.case
        output, self.output = self.output, None
        shape = tuple(output.shape) if output is not None else None
        timing = self.clock.timing()
        if shape != (case.batch_size, self.expected_len) or timing.steps != case.new_tokens:
            raise TokenCountError(
                f"{case.model}: asked for {case.new_tokens} new tokens per row x batch {case.batch_size}, "
                f"got output shape {shape} (expected {(case.batch_size, self.expected_len)}) over "
                f"{timing.steps} generation steps; tokens/s would be wrong, so this item fails"
            )
        compiles = dynamo_frame_compiles() - self.compiles_at_round
        prompt = None if self.prompt == case.seq_len else self.prompt
        self.rounds.append(GenerateRound(timing, self.watch.take(), compiles, prompt))

    def _count_pass(self, mark: Mark) -> None:
        # The rounds' request with a criterion of its own: the rounds' clock and records stay untouched.
        criteria = StoppingCriteriaList([_PhaseMark(mark, self.never)])
        with torch.inference_mode():
            self.model.generate(
                **self.inputs, generation_config=self.generation_config, stopping_criteria=criteria
            )

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        info = pooled_metrics(self.case, self.rounds[warmup_rounds:])
        if self.rounds:
            info["generate_compiles_warmup"] = sum(r.compiles for r in self.rounds[:warmup_rounds])
        return {**info, **self.reads, "generation_config": self.recorded}

    def records(self, warmup_rounds: int) -> list[Any]:
        return self.rounds[warmup_rounds:]

    def cleanup(self) -> None:
        self.model.generation_config = self.model_generation
        self.watch.close()
        ever = self.watch.ever_compiled or dynamo_frame_compiles() > self.compiles_at_start
        release_generate_state(self.model, dynamo_compiled=ever)


SCENARIO = Scenario(
    "generate",
    lambda case: case.seq_len + case.new_tokens,
    lambda loaded, case, settings: GenerateWork(loaded, case, settings.generate_settings(case.new_tokens)),
    unsupported_reason,
    pooled_metrics,
    variant_reason,
)
