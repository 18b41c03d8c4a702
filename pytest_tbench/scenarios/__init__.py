"""What is run: each scenario turns a loaded model and a case into one measurable call (a ``Work``).

A mode's entry says how many positions an item needs, which architectures it cannot run, how its work is
built from the session's settings, and how its metrics are recomputed when an item's rounds ran in several
processes. What the rest of the plugin knows of a mode (its default head, its tables) is in ``modes``.

``register_mode`` adds a mode to both tables in one call (from a user's conftest.py); every reader looks modes
up in the tables when it is called, so a mode registered before collection becomes pytest items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PretrainedConfig

from ..axes import COMPILE_OFF
from ..cases import BenchCase
from ..config import TBenchConfig
from ..models.loading import HEADS, LoadedModel
from ..modes import MODES as MODE_TABLE
from ..modes import Mode
from .base import Work
from .compiled import steady_compiled
from .forward import forward_work
from .generate import generate_work, pooled_metrics, unsupported_reason
from .generate import variant_reason as generate_variant_reason
from .train import train_work


def _always_supported(spec: str, config: PretrainedConfig) -> str | None:
    return None


def _all_variants(case: BenchCase, settings: TBenchConfig) -> str | None:
    return None


def _default_variants(case: BenchCase, settings: TBenchConfig) -> str | None:
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
    build: Callable[[LoadedModel, BenchCase, TBenchConfig], Work]
    unsupported_reason: Callable[[str, PretrainedConfig], str | None] = _always_supported
    # Metrics recomputed over the rounds of several worker processes (their ``Work.records``); None: the
    # scenario's metrics do not depend on the rounds.
    pooled_metrics: Callable[[BenchCase, list[Any]], dict[str, Any]] | None = None
    # Why the scenario cannot run a case's variant (axes.AXES; attention is the model's, compile the
    # scenario's) with the session's settings; None: it can. The default accepts only the uncompiled variant.
    variant_reason: Callable[[BenchCase, TBenchConfig], str | None] = _default_variants

    @property
    def default_head(self) -> str:
        return MODE_TABLE[self.mode].default_head


SCENARIOS: dict[str, Scenario] = {
    "forward": Scenario(
        "forward",
        lambda case: case.seq_len,
        lambda loaded, case, _: forward_work(loaded, case),
        variant_reason=_all_variants,
    ),
    "generate": Scenario(
        "generate",
        lambda case: case.seq_len + case.new_tokens,
        lambda loaded, case, settings: generate_work(
            loaded, case, settings.generate_settings(case.new_tokens)
        ),
        unsupported_reason,
        pooled_metrics,
        generate_variant_reason,
    ),
    "train": Scenario(
        "train",
        lambda case: case.seq_len,
        lambda loaded, case, settings: train_work(loaded, case, settings.optimizer),
        variant_reason=_all_variants,
    ),
}


def register_mode(mode: Mode, scenario: Scenario) -> None:
    """Add a mode: its tables and default head (``mode``) and how its work is built (``scenario``).

    Call it where pytest imports it before collecting tests (a conftest.py, a plugin), then mark tests
    ``@pytest.mark.tbench(mode=<name>)``. ValueError, and neither table changed, for a name already taken, a
    mode and scenario of different names or an unknown default head.
    """
    if mode.name != scenario.mode:
        raise ValueError(
            f"register_mode: the mode is named {mode.name!r} but its scenario {scenario.mode!r}; "
            "give both the same name"
        )
    if mode.name in MODE_TABLE or mode.name in SCENARIOS:
        raise ValueError(
            f"register_mode: a mode named {mode.name!r} already exists (modes: {', '.join(MODE_TABLE)}); "
            "pick another name"
        )
    if mode.default_head not in HEADS:
        raise ValueError(
            f"register_mode: mode {mode.name!r} has default head {mode.default_head!r}; "
            f"valid heads {', '.join(HEADS)}"
        )
    MODE_TABLE[mode.name] = mode
    SCENARIOS[mode.name] = scenario
    # Worker processes (--tbench-isolate, --tbench-processes, --tbench-ab) fork from a process that imports
    # its preload list, not the conftest.py: the module that defines the scenario registers it there too.
    module = getattr(scenario.build, "__module__", None)
    if module and module != "__main__" and not module.startswith("pytest_tbench."):
        from ..launchers.forkserver import preload

        preload([module])


def build_work(loaded: LoadedModel, case: BenchCase, settings: TBenchConfig) -> Work:
    scenario = SCENARIOS.get(case.mode)
    if scenario is None:
        # The plugin checks marks against this table, so the mode was registered in the pytest process but
        # not here: a worker of --tbench-isolate / --tbench-processes has only the forkserver's imports.
        raise LookupError(
            f"mode {case.mode!r} is not registered in this worker process (modes here: "
            f"{', '.join(SCENARIOS)}): a worker imports the module that defines a registered scenario's "
            "build function; define it in an importable module (or the conftest.py that registers it)"
        )
    work = scenario.build(loaded, case, settings)
    return work if case.compile == COMPILE_OFF else steady_compiled(work, case, loaded.devices)


__all__ = ["SCENARIOS", "Scenario", "Work", "build_work", "register_mode"]
