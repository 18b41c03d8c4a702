"""What is run: each scenario turns a loaded model and a case into one measurable call (a ``Work``).

A mode's entry says how many positions an item needs, which architectures it cannot run, how its work is
built from the session's settings, and how its metrics are recomputed when an item's rounds ran in several
processes. What the rest of the plugin knows of a mode (its default head, its tables) is in ``modes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

from ..cases import BenchCase
from ..config import TBenchConfig
from ..models.loading import LoadedModel
from ..modes import MODES as MODE_TABLE
from .base import Work
from .forward import forward_work
from .generate import generate_work, pooled_metrics, unsupported_reason
from .train import train_work


def _always_supported(spec: str, config: PretrainedConfig) -> str | None:
    return None


@dataclass(frozen=True)
class Scenario:
    mode: str
    positions_needed: Callable[[BenchCase], int]
    build: Callable[[LoadedModel, BenchCase, TBenchConfig], Work]
    unsupported_reason: Callable[[str, PretrainedConfig], str | None] = _always_supported
    # Metrics recomputed over the rounds of several worker processes (their ``Work.records``); None: the
    # scenario's metrics do not depend on the rounds.
    pooled_metrics: Callable[[BenchCase, list[Any]], dict[str, Any]] | None = None

    @property
    def default_head(self) -> str:
        return MODE_TABLE[self.mode].default_head


SCENARIOS: dict[str, Scenario] = {
    "forward": Scenario(
        "forward", lambda case: case.seq_len, lambda loaded, case, _: forward_work(loaded, case)
    ),
    "generate": Scenario(
        "generate",
        lambda case: case.seq_len + case.new_tokens,
        lambda loaded, case, settings: generate_work(
            loaded, case, settings.generate_settings(case.new_tokens)
        ),
        unsupported_reason,
        pooled_metrics,
    ),
    "train": Scenario(
        "train",
        lambda case: case.seq_len,
        lambda loaded, case, settings: train_work(loaded, case, settings.optimizer),
    ),
}
MODES = tuple(SCENARIOS)


def build_work(loaded: LoadedModel, case: BenchCase, settings: TBenchConfig) -> Work:
    return SCENARIOS[case.mode].build(loaded, case, settings)


__all__ = ["MODES", "SCENARIOS", "Scenario", "Work", "build_work"]
