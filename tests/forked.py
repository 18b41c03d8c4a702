"""``runpytest_forked``: pytester's ``runpytest_subprocess``, but the session is forked from a process
that has already imported torch, transformers and the plugin's other dependencies (``tests/zygote.py``), one
per test process. The session is still a process of its own: its conftest's patches, its threads, its exit
code and its peak memory are its own, and it ends before the next one starts.

A session whose environment sets a variable that those libraries read when they are imported (threads, CUDA,
the Hugging Face cache, Python's own) differently from the zygote's runs as a real subprocess instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

ZYGOTE = Path(__file__).with_name("zygote.py")
ROOT = ZYGOTE.parent.parent
IMPORT_TIME = (
    "OMP_", "MKL_", "KMP_", "GOMP_", "CUDA_", "HF_", "HUGGINGFACE_", "TORCH", "PYTORCH_", "TRANSFORMERS_",
    "TOKENIZERS_", "LD_", "PYTHON", "MALLOC_", "THP_",
)  # fmt: skip
STARTUP_TIMEOUT_S = 300.0  # the zygote's imports: ~7 s on this VM, several times that under the suite's load


class Zygote:
    """The forking process (tests/zygote.py) and its two pipes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT
        )
        self._buffer = b""
        self._reply(STARTUP_TIMEOUT_S)

    def run(self, job: dict[str, Any], timeout: float | None) -> int | None:
        """The session's exit code; None when it ran past ``timeout`` (it is killed)."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        pid = int(self._reply(STARTUP_TIMEOUT_S)["pid"])
        try:
            return int(self._reply(timeout)["rc"])
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._reply(STARTUP_TIMEOUT_S)  # the zygote reaps it
            return None

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)

    def _reply(self, timeout: float | None) -> dict[str, Any]:
        """The zygote's next JSON line, waiting (blocked in select, not polling) at most ``timeout``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the test zygote ({ZYGOTE}) ended: exit code {self.process.wait()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))


_ENV_AT_IMPORT = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
_zygote: Zygote | None = None


def _zygote_here() -> Zygote:
    global _zygote
    if _zygote is None or _zygote.process.poll() is not None:
        _zygote = Zygote(_ENV_AT_IMPORT)
        atexit.register(_zygote.close)
    return _zygote


def _differs_at_import(env: dict[str, str]) -> list[str]:
    names = set(env) | set(_ENV_AT_IMPORT)
    return sorted(
        name
        for name in names
        if name.startswith(IMPORT_TIME) and name != "PYTHONPATH" and env.get(name) != _ENV_AT_IMPORT.get(name)
    )


def runpytest_forked(pytester: pytest.Pytester, *args: str, timeout: float | None = None) -> pytest.RunResult:
    """As ``pytester.runpytest_subprocess(*args)``: a numbered ``--basetemp``, the pytester's plugins by name,
    this process' environment with the current folder first on PYTHONPATH, output in ``stdout``/``stderr``."""
    env = dict(os.environ)
    if _differs_at_import(env):
        return pytester.runpytest_subprocess(*args, timeout=timeout)
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=pytester.path)
    session_args: list[str] = [f"--basetemp={basetemp}", *args]
    for plugin in pytester.plugins:
        if not isinstance(plugin, str):
            raise ValueError(f"a forked session takes plugins by name, as a subprocess does: {plugin}")
        session_args = ["-p", plugin, *session_args]
    cwd = os.getcwd()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [cwd, env.get("PYTHONPATH", "")]))
    out, err = pytester.path / "stdout", pytester.path / "stderr"
    job = {
        "cwd": cwd,
        "argv": [str(Path(pytest.__file__).parent / "__main__.py"), *session_args],  # as `python -m pytest`
        "env": env,
        "path": [cwd, *env["PYTHONPATH"].split(os.pathsep)],
        "stdout": str(out),
        "stderr": str(err),
    }
    print("running (forked):", *session_args)
    print("     in:", cwd)
    started = time.perf_counter()
    rc = _zygote_here().run(job, timeout)
    duration = time.perf_counter() - started
    outlines = out.read_text(encoding="utf8", errors="replace").splitlines()
    errlines = err.read_text(encoding="utf8", errors="replace").splitlines()
    print("\n".join(outlines))
    print("\n".join(errlines), file=sys.stderr)
    if rc is None:
        raise pytester.TimeoutExpired(f"{timeout} second timeout expired running: {session_args}")
    try:
        code: int | pytest.ExitCode = pytest.ExitCode(rc)
    except ValueError:
        code = rc
    return pytest.RunResult(code, outlines, errlines, duration)
