"""One item's rounds under the memory tracker, on its device, and the extra_info every item carries, whichever
launcher ran them (in the pytest process or in a worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cases import BenchCase
from ..devices import on_device
from ..metric_table import (
    ATTN_IMPLEMENTATION_USED,
    MEDIAN_S,
    THROUGHPUT_SAMPLES_PER_S,
    THROUGHPUT_TOKENS_PER_S,
)
from ..models.attention import implementation_used
from ..models.loading import LoadedModel
from ..scenarios.base import Work
from ..trackers import memory_tracker


def run_item(
    case: BenchCase,
    loaded: LoadedModel,
    work: Work,
    rounds: int,
    warmup: int,
    run_rounds: Callable[[], object],
) -> dict[str, Any]:
    """Run the rounds (``run_rounds``, in whichever launcher) under the memory tracker and return the item's
    extra_info; the work's cleanup runs even when a round fails."""
    try:
        # The item's GPU is the current device throughout: calls that take no device (events, streams,
        # empty_cache, transformers' own CUDA calls) then act on it, not on GPU 0.
        with on_device(case.device), memory_tracker(case.device) as memory:
            work.prepare()
            run_rounds()
        metrics = work.metrics(warmup)  # before cleanup, which drops what it reads
    finally:
        work.cleanup()
    return {**describe(case, loaded, work, rounds, warmup), **memory, **metrics}


def describe(case: BenchCase, loaded: LoadedModel, work: Work, rounds: int, warmup: int) -> dict[str, Any]:
    return {
        "mode": case.mode,
        "model": case.model,
        "model_class": type(loaded.model).__name__,
        "model_source": loaded.source,
        "model_load_time_s": loaded.load_time_s,
        "num_parameters": loaded.num_parameters,
        "parameter_bytes": loaded.parameter_bytes,
        "batch_size": case.batch_size,
        "seq_len": case.seq_len,
        "device": case.device,
        "dtype": case.dtype,
        "attn_implementation": case.attn_implementation,
        ATTN_IMPLEMENTATION_USED: implementation_used(loaded.model),
        "compile": case.compile,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "samples_per_call": work.samples,
        "tokens_per_call": work.tokens,
    }


def throughput(samples_per_call: int, tokens_per_call: int, median_s: float | None) -> dict[str, Any]:
    """Per-call median and the rates it gives; nothing when no timing was kept (--benchmark-disable)."""
    if median_s is None or median_s <= 0:
        return {}
    info: dict[str, Any] = {
        MEDIAN_S: median_s,
        THROUGHPUT_SAMPLES_PER_S: samples_per_call / median_s,
    }
    if tokens_per_call:
        info[THROUGHPUT_TOKENS_PER_S] = tokens_per_call / median_s
    return info
