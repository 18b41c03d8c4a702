"""pytest-tbench: benchmarks of Hugging Face transformers models as pytest items.

The public names are imported on first use (PEP 562), so that a tool that needs only part of the package
(``tbench report``, ``tbench compare``) does not pay for torch and transformers, which the fixture object and
the model registry import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_tbench.core.modes import Mode
    from pytest_tbench.models.registry import register_model
    from pytest_tbench.plugin.fixture import TBench
    from pytest_tbench.scenarios import Scenario, Work, register_mode
    from pytest_tbench.settings.cases import BenchCase
    from pytest_tbench.settings.config import TBenchConfig

from pytest_tbench.core.version import VERSION as __version__

__all__ = [
    "BenchCase",
    "Mode",
    "Scenario",
    "TBench",
    "TBenchConfig",
    "Work",
    "__version__",
    "register_mode",
    "register_model",
]

# Public name -> the module that defines it.
_LAZY = {
    "BenchCase": ".settings.cases",
    "TBench": ".plugin.fixture",
    "TBenchConfig": ".settings.config",
    "register_model": ".models.registry",
    # A new mode: its table entry, how its work is built, and the call that adds both.
    "Mode": ".core.modes",
    "Scenario": ".scenarios",
    "Work": ".scenarios",
    "register_mode": ".scenarios",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
