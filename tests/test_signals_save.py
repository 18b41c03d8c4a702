"""A SIGTERM that arrives while the session saves (pytest-benchmark writes its JSON in place) waits until the
file is written, then ends the process: a truncated JSON would make the next gate find no baseline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .conftest import TINY

# Sends the session its own SIGTERM from inside pytest-benchmark's save, then goes on with it.
CONFTEST = """
import os
import signal


def pytest_benchmark_update_json(config, benchmarks, output_json):
    os.kill(os.getpid(), signal.SIGTERM)
    output_json["after_the_signal"] = True
"""


def test_a_sigterm_during_the_save_leaves_the_json_whole(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_bench="def test_forward(tbench):\n    tbench.forward()\n")
    command = [sys.executable, "-m", "pytest", *TINY, "--benchmark-json", "out.json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300)
    # The signal was delivered once the run was saved: the process ends as SIGTERM ends it.
    assert done.returncode == -signal.SIGTERM, done.stdout[-2000:] + done.stderr[-2000:]
    saved = json.loads((pytester.path / "out.json").read_text())
    assert saved["after_the_signal"] is True and len(saved["benchmarks"]) == 1
