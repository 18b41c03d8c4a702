"""The tests' throwaway PostgreSQL server runs detached (pg_ctl): one whose test process was killed is stopped
and removed by the next session that starts one."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from .postgres_server import OWNER, PREFIX, sweep_stale


def test_a_server_whose_test_process_is_gone_is_stopped_and_removed() -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    postmaster = subprocess.Popen(["sleep", "60"])  # stands in for the detached server
    stale = Path(tempfile.mkdtemp(prefix=PREFIX))
    (stale / OWNER).write_text(str(ended.pid))
    (stale / "data").mkdir()
    (stale / "data" / "postmaster.pid").write_text(f"{postmaster.pid}\n/data\n")
    living = Path(tempfile.mkdtemp(prefix=PREFIX))
    (living / OWNER).write_text(str(os.getpid()))  # a running owner: left alone
    try:
        removed = sweep_stale()
        assert stale in removed and not stale.exists() and living.exists()
        assert postmaster.wait(timeout=10) == -9
    finally:
        postmaster.kill()
        subprocess.run(["rm", "-rf", str(stale), str(living)], check=False)
