"""Shared helpers for the plugin's own tests; most tests drive a whole pytest run through pytester."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# Before anything imports huggingface_hub, which reads it once; and before .forked keeps this environment for
# its zygote.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

# Imported here, before any in-process pytester run: such a run forgets the modules it imported when it ends,
# and the next one would import torch's inductor again, which cannot register its operators twice ("Only a
# single TORCH_LIBRARY ..."); a part of the suite whose test files import none of the plugin would hit it.
import pytest_tbench.plugin.hooks  # noqa: F401

from .forked import runpytest_forked

# postgres_server: the session-scoped postgres_url fixture (a throwaway PostgreSQL server).
pytest_plugins = ["pytester", "tests.postgres_server"]

# The smallest sweep that still has two of everything; tiny models keep a run well under a second.
TINY = [
    "--tbench-models",
    "tiny-gpt2",
    "--tbench-batch-sizes",
    "1",
    "--tbench-seq-lens",
    "8",
    "--tbench-rounds",
    "2",
    "--tbench-warmup",
    "0",
    "-p",
    "no:cacheprovider",
]

# Big enough that a call is milliseconds of model time, so that fixture and Python overhead cannot decide a
# comparison with an independent measurement. In-process pytester runs see this registration; a subprocess
# run gets it from MID_CONFTEST.
MID_CONFTEST = """
from transformers import GPT2Config
from pytest_tbench import register_model

register_model(
    "gpt2-mid",
    lambda: GPT2Config(
        n_layer=4, n_embd=256, n_head=4, vocab_size=4000, n_positions=512, bos_token_id=0, eos_token_id=0
    ),
)
"""
exec(MID_CONFTEST)

FORWARD_BENCH = """
from pytest_tbench import TBench

def test_forward(tbench: TBench) -> None:
    tbench.forward()
"""


# One item of every mode, as a user would write them.
ALL_MODES_BENCH = """
import pytest

def test_forward(tbench):
    tbench.forward()

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()

@pytest.mark.tbench(mode="train")
def test_train(tbench):
    tbench.train()
"""


@pytest.fixture
def forward_bench(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory holding the one-line forward bench a user would write."""
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    return pytester


def bench_script(name: str) -> ModuleType:
    """A script of benches/ (``name``.py) loaded as a module, for tests of its pure functions."""
    path = Path(__file__).resolve().parent.parent / "benches" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def run_json(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run pytest with ``--benchmark-json`` and return the result and the parsed JSON."""
    out = pytester.path / "out.json"
    if subprocess:
        result = runpytest_forked(pytester, *args, f"--benchmark-json={out}")
    else:
        result = pytester.runpytest(*args, f"--benchmark-json={out}")
    data = json.loads(Path(out).read_text()) if out.exists() else {}
    return result, data


@pytest.fixture
def restored_modes() -> Iterator[Callable[[], None]]:
    """Gives a call that puts the mode and scenario tables back as they were, and makes it after the test: an
    in-process pytester run imports its conftest.py, and so registers modes in this process, where a second
    registration of the same name (the next run's) would rightly fail."""
    from pytest_tbench.core.modes import MODES
    from pytest_tbench.scenarios import SCENARIOS

    modes, scenarios = dict(MODES), dict(SCENARIOS)

    def restore() -> None:
        MODES.clear()
        MODES.update(modes)
        SCENARIOS.clear()
        SCENARIOS.update(scenarios)

    yield restore
    restore()


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's parallel part runs on xdist workers (README: the test command); the sessions a test starts
    (pytester, in-process or not) are plain ones, which pytest-benchmark would take for xdist workers from the
    inherited PYTEST_XDIST_WORKER, and switch off."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
