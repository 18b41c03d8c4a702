"""A mode's scenario: how many positions an item needs, which architectures it cannot run, how its work is
built from the session's settings, how its metrics are recomputed when an item's rounds ran in several
processes, and which variants it can run. Each built-in mode's module defines its ``SCENARIO``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

from pytest_tbench.core.axes import COMPILE_OFF
from pytest_tbench.core.modes import MODES
from pytest_tbench.measure.work import Work
from pytest_tbench.models.loading import LoadedModel
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings


def _always_supported(spec: str, config: PretrainedConfig) -> str | None:
    return None


def all_variants(case: BenchCase, settings: RunSettings) -> str | None:
    return None


def _default_variants(case: BenchCase, settings: RunSettings) -> str | None:
    """A registered scenario runs the model as it is loaded: it has no compiled variant to offer."""
    if case.compile == COMPILE_OFF:
        return None
    return (
        f"mode {case.mode!r} does not run a compiled model: its scenario was registered without a "
        "variant_reason that accepts --tbench-compile (use scenarios.compiled.compiled_module in its build)"
    )


@dataclass(frozen=True)
class Scenario:
    mode: str
    positions_needed: Callable[[BenchCase], int]
    build: Callable[[LoadedModel, BenchCase, RunSettings], Work]
    unsupported_reason: Callable[[str, PretrainedConfig], str | None] = _always_supported
    # Metrics recomputed over the rounds of several worker processes (their ``Work.records``); None: the
    # scenario's metrics do not depend on the rounds.
    pooled_metrics: Callable[[BenchCase, list[Any]], dict[str, Any]] | None = None
    # Why the scenario cannot run a case's variant (axes.AXES; attention is the model's, compile the
    # scenario's) with the session's settings; None: it can. The default accepts only the uncompiled variant.
    variant_reason: Callable[[BenchCase, RunSettings], str | None] = _default_variants

    @property
    def default_head(self) -> str:
        return MODES[self.mode].default_head
