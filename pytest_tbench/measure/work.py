from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch: imported by the scenarios that count FLOPs
    from pytest_tbench.models.flops import FlopPass


def _nothing() -> None:
    return None


def _no_metrics(warmup_rounds: int) -> dict[str, Any]:
    return {}


def _no_records(warmup_rounds: int) -> list[Any]:
    return []


@dataclass(frozen=True)
class Work:
    """One measured call, how much it processes (for throughput), and optional per-round hooks.

    ``prepare`` runs once, untimed, before the first round and before the item's memory tracking (a compiled
    variant compiles there, see ``scenarios/compiled.py``: its scratch is not the item's peak);
    ``before_round`` and ``after_round`` run untimed around every round, warm-up included (after the device is
    synchronised); ``metrics`` turns what the rounds recorded into extra_info, given how many leading rounds
    were warm-up; ``records`` returns the measured rounds' raw records (picklable), from which the scenario's
    ``pooled_metrics`` recomputes the metrics over rounds taken in several processes; ``cleanup`` runs once
    after the item, even when it failed; ``flops``: how one call's FLOPs are counted, once, untimed, after the
    rounds (None: not counted, as for a user's call, which may not be run again freely).
    """

    call: Callable[[], object]
    samples: int
    tokens: int
    before_round: Callable[[], None] = _nothing
    after_round: Callable[[], None] = _nothing
    metrics: Callable[[int], dict[str, Any]] = field(default=_no_metrics)
    records: Callable[[int], list[Any]] = field(default=_no_records)
    cleanup: Callable[[], None] = _nothing
    flops: FlopPass | None = None
    prepare: Callable[[], None] = _nothing
