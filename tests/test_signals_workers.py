"""SIGTERM (``docker stop``, a CI time limit, ``kill``) reaching only the pytest process while a worker
measures: the session ends within seconds, saves the items that finished, and leaves no worker behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The stop's time is asserted (10 s, a container's usual grace period): runs alone, after the parallel part.
pytestmark = pytest.mark.timing

# gpt2's forward, stuck for two minutes at batch 2 (in the worker: the conftest is imported there too). The
# stuck worker writes its pid first.
CONFTEST = """
import os
import time
from pathlib import Path

from transformers.models.gpt2 import modeling_gpt2

_forward = modeling_gpt2.GPT2Model.forward


def forward(self, input_ids=None, **kwargs):
    if input_ids is not None and input_ids.shape[0] == 2:
        Path("stuck-started").write_text(str(os.getpid()))
        time.sleep(120)
    return _forward(self, input_ids=input_ids, **kwargs)


modeling_gpt2.GPT2Model.forward = forward
"""
BENCH = "def test_forward(tbench):\n    tbench.forward()\n"
ARGS = ["--tbench-models", "tiny-gpt2", "--tbench-batch-sizes", "1,2", "--tbench-seq-lens", "8",
        "--tbench-rounds", "2", "--tbench-warmup", "0", "--benchmark-json", "out.json",
        "-p", "no:cacheprovider"]  # fmt: skip


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


# The launchers whose items run in worker processes.
WORKER_LAUNCHERS = pytest.mark.parametrize(
    "launcher",
    [["--tbench-isolate"], ["--tbench-ab", "env:X=1", "--tbench-ab-pairs", "2"]],
    ids=["isolated", "ab"],
)


@WORKER_LAUNCHERS
def test_sigterm_during_a_worker_s_item_ends_the_session_quickly_and_saves(
    pytester: pytest.Pytester, launcher: list[str]
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_bench=BENCH)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "pytest", *ARGS, *launcher]
    with subprocess.Popen(command, cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True) as proc:
        marker = pytester.path / "stuck-started"
        deadline = time.monotonic() + 300
        while not (marker.exists() and marker.read_text()):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the stuck item never started"
            time.sleep(0.1)
        worker = int(marker.read_text())
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    assert took < 10, f"the session took {took:.1f} s to stop"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    saved = json.loads((pytester.path / "out.json").read_text())
    assert [b["params"]["tbench_case"]["batch_size"] for b in saved["benchmarks"]] == [1]
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), f"worker {worker} outlived the session"
