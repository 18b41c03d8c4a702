"""What is run: each scenario turns a loaded model and a case into one measurable call (a ``Work``).

A mode's entry says which model head it loads by default, how many positions an item needs, and which
architectures it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import PretrainedConfig

from ..cases import BenchCase
from .base import Work
from .forward import forward_work
from .generate import generate_work, unsupported_reason


def _always_supported(spec: str, config: PretrainedConfig) -> str | None:
    return None


@dataclass(frozen=True)
class Scenario:
    mode: str
    default_head: str
    positions_needed: Callable[[BenchCase], int]
    unsupported_reason: Callable[[str, PretrainedConfig], str | None] = _always_supported


SCENARIOS: dict[str, Scenario] = {
    "forward": Scenario("forward", "base", lambda case: case.seq_len),
    "generate": Scenario("generate", "lm", lambda case: case.seq_len + case.new_tokens, unsupported_reason),
}
MODES = tuple(SCENARIOS)

__all__ = ["MODES", "SCENARIOS", "Scenario", "Work", "forward_work", "generate_work"]
