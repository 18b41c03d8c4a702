"""What a worker's parent process imports before it forks the first worker, read when that process starts:
torch, transformers and the worker code, the session's models' code, and the module of every scenario
registered from outside the plugin. One list for every launcher that forks (the forkserver of
--tbench-isolate / --tbench-processes, each A/B side's process): a worker then starts ready in well under a
second, and a mode registered in a conftest.py exists in the worker too (a worker is a fresh process: only
what it imports runs there)."""

from __future__ import annotations

import importlib.util

BASE = ("torch", "transformers", "pytest_tbench.launch.worker")
# transformers' modeling modules of the session's models, added at collection (plugin/hooks.py); each worker
# would import them again otherwise (~1 s a model).
_MODEL_CODE: list[str] = []


def modeling_module(model_type: str) -> str | None:
    """transformers' modeling module of an architecture, if it has one under the usual name."""
    name = f"transformers.models.{model_type}.modeling_{model_type}"
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except (ImportError, ValueError):
        return None


def add_model_code(modules: list[str]) -> None:
    _MODEL_CODE.extend(m for m in modules if m not in _MODEL_CODE)


def scenario_modules() -> list[str]:
    """The modules that define the build functions of the scenarios registered outside the plugin."""
    from pytest_tbench.scenarios import SCENARIOS

    modules = (getattr(scenario.build, "__module__", None) for scenario in SCENARIOS.values())
    return [m for m in modules if m and m != "__main__" and not m.startswith("pytest_tbench.")]


def preload_modules() -> list[str]:
    return list(dict.fromkeys([*BASE, *_MODEL_CODE, *scenario_modules()]))
