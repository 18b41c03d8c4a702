"""``--tbench-compare store:[BRANCH]``: the gate's baseline read from the history store (``--tbench-store``,
else ``$TBENCH_STORE``, else ``.benchmarks/tbench.sqlite``): the newest ``--tbench-compare-last`` runs
measured on this machine (the label the store gives runs: host and GPUs, or host and CPU; any machine under
``--tbench-compare-any-machine``), of BRANCH where given (a glob: ``store:main``), each as pytest-benchmark
JSON, so that the gate checks and pools them as it does saved files.

They are exported by ``tbench store export --last`` in a child process: SQLAlchemy imported in this process,
which measures CPU items, would add its memory to every item's peak RSS (settings/store.py avoids it for the
same reason).
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.run_file import load_run
from pytest_tbench.history.stored import machine_label
from pytest_tbench.settings.store import STORE_ENV, check_store_text, default_store, mask_text

STORE_PREFIX = "store:"
# A stalled server must not stall the session: the export of a few runs takes seconds.
EXPORT_TIMEOUT_S = 300


def is_store_baseline(compare: str | None) -> bool:
    return bool(compare) and str(compare).startswith(STORE_PREFIX)


def this_machine(environment: dict[str, Any]) -> str:
    """This machine's label in the store (``environment``: this session's ``machine_info["tbench"]``)."""
    return machine_label({"node": platform.node(), "tbench": environment})


def stored_baselines(
    spec: str, store: str | None, last: int, machine: str | None, cwd: Path
) -> list[tuple[str, dict[str, Any]]]:
    """(name, run) of the newest ``last`` stored runs of ``machine`` (None: any) and the branch ``spec``
    names, oldest first; an OptionError that says why there are none."""
    location = store or default_store()
    wrong = check_store_text(location)
    if wrong:
        raise OptionError(f"{spec}: {wrong}")
    if "://" not in location and not (cwd / location).is_file():
        raise OptionError(
            f"{spec}: the store {location} does not exist; write runs into it with --tbench-store "
            f"{location}, or `tbench store import .benchmarks/`"
        )
    branch = spec.removeprefix(STORE_PREFIX)
    with tempfile.TemporaryDirectory(prefix="tbench-baseline-") as folder:
        command = [
            sys.executable, "-m", "pytest_tbench.cli", "store", "export",
            "--last", str(last), "--branch", branch, "--out-dir", folder,
            "--machine", "" if machine is None else glob.escape(machine),
        ]  # fmt: skip
        # The store through the child's environment, not its command line: any local user reads a process'
        # arguments (ps, /proc/PID/cmdline, audit logs), and the URL may hold a password.
        env = {**os.environ, STORE_ENV: location}
        try:
            done = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise OptionError(
                f"{spec}: reading the store {mask_text(location)} took over {EXPORT_TIMEOUT_S} s; is its "
                "server reachable?"
            ) from None
        if done.returncode != 0:
            said = done.stderr.strip() or f"tbench store export exited with {done.returncode}"
            where = (
                "" if machine is None else f" (this machine: {machine}; any: --tbench-compare-any-machine)"
            )
            raise OptionError(f"{spec}: {mask_text(said)}{where}")
        found = []
        for line in done.stdout.splitlines():
            path, run_id = line.split("\t")[:2]
            found.append((f"store run {run_id}", load_run(Path(path))))
    return found
