"""A session stopped by SIGTERM (a CI time limit, ``timeout``, pre-emption) keeps what it measured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# Compares timings: runs alone, after the parallel part of the suite (README: the test command).
pytestmark = pytest.mark.timing

BENCH = """
import time
from pathlib import Path

import pytest
from pytest_tbench import TBench


@pytest.mark.parametrize("step", ["done", "stuck"])
def test_step(tbench: TBench, step: str) -> None:
    def call() -> None:
        if step == "stuck":
            Path("stuck-started").touch()
            time.sleep(120)

    tbench.measure(call)
"""


def test_sigterm_stops_the_session_and_the_json_keeps_finished_items(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH)
    args = ["--tbench-models", "tiny-gpt2", "--tbench-batch-sizes", "1", "--tbench-seq-lens", "8",
            "--tbench-devices", "cpu", "--tbench-rounds", "3", "--tbench-warmup", "0",
            "--benchmark-json", "out.json", "-p", "no:cacheprovider"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", *args], cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 120
        while not (pytester.path / "stuck-started").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the stuck item never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "SIGTERM" in out
    saved = json.loads((pytester.path / "out.json").read_text())
    names = [b["name"] for b in saved["benchmarks"]]
    assert len(names) == 1 and "done" in names[0], names
