"""pytest-tbench: benchmarks of Hugging Face transformers models as pytest items.

The public names are imported on first use (PEP 562), so that a tool that needs only part of the package
(``tbench report``, ``tbench compare``) does not pay for torch and transformers, which the fixture object and
the model registry import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cases import BenchCase
    from .config import TBenchConfig
    from .fixture import TBench
    from .models.registry import register_model
    from .modes import Mode
    from .scenarios import Scenario, Work, register_mode

__version__ = "0.1.0"
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
    "BenchCase": ".cases",
    "TBench": ".fixture",
    "TBenchConfig": ".config",
    "register_model": ".models.registry",
    # A new mode: its table entry, how its work is built, and the call that adds both.
    "Mode": ".modes",
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
