"""The pytest process' handle on one A/B side's process (``zygote``) and on the workers it forks.

Every wait is a blocking read on a socket (no polling), so the pytest process takes no CPU while a worker
measures; a process that dies closes its socket, which ends the read at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle
from pathlib import Path
from typing import IO, Any

from pytest_tbench.launch.base import Job
from pytest_tbench.launch.conftests import Conftest
from pytest_tbench.launch.forkserver import DOING, ItemTimedOut, WorkerDied, describe_exit
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.models.loading import ModelKey

STDERR_TAIL = 3000  # characters of a failed side process' stderr quoted in its error


class SideError(RuntimeError):
    """A side's process or worker failed; the message names the side."""


@dataclass(frozen=True)
class Launch:
    """How a side's process starts: interpreter, environment, import path around the interpreter's own."""

    python: str
    env: dict[str, str]
    prepend: list[str]  # put first on sys.path (a base revision's worktree)
    append: list[str]  # put last (the session's project directories, for another interpreter)
    preload: list[str]  # modules imported once, before any worker is forked
    conftests: tuple[Conftest, ...] = ()  # imported after them: this side's copies of the session's conftests


class SideProcess:
    def __init__(self, name: str, launch: Launch) -> None:
        self.name = name
        self.launch = launch
        self.facts: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._stderr: IO[bytes] | None = None
        self.kept: Worker | None = None  # the worker that served this side's last item, and keeps its model

    def start(self) -> dict[str, Any]:
        """Start the side's process and wait until it has imported what its workers need; its facts
        (interpreter, versions)."""
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Start the process; it imports while the caller goes on (``wait_ready``)."""
        ours, theirs = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the process' life: close())
        try:
            self._process = subprocess.Popen(
                [self.launch.python, "-m", "pytest_tbench.launch.ab.zygote", str(theirs.fileno())],
                env=self.launch.env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=self._stderr,
            )
        except OSError as exc:
            raise SideError(f"{self.name}: cannot start {self.launch.python!r}: {exc}") from None
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        with contextlib.suppress(OSError):  # it died at once: wait_ready says how
            # The conftests as plain dicts: unpickling the dataclass would import this plugin's launchers (and
            # transformers) before the side has set its import path (a base revision's worktree first).
            conftests = [asdict(conftest) for conftest in self.launch.conftests]
            launch = self.launch
            self._conn.send(("start", launch.prepend, launch.append, launch.preload, conftests))

    def wait_ready(self) -> dict[str, Any]:
        reply = self._receive("starting")
        if reply[0] != "ready":
            raise SideError(f"{self.name}: its process failed while importing:\n{reply[1]}")
        self.facts = reply[1]
        return self.facts

    def worker_for(self, job: Job) -> Worker:
        """This side's worker for ``job``, given it: the kept worker of the same model (it keeps the model
        loaded), else a fresh one, forked; it loads and warms up while the caller goes on."""
        kept = self.kept
        if kept is None or kept.model_key != job.case.model_key:
            self.release_worker()
            kept = self._fork()
        kept.model_key = job.case.model_key
        limit = job.item_timeout
        kept.deadline = None if limit is None else time.monotonic() + limit
        kept.limit_s = limit
        # The worker checks that this side's conftests imported (a base revision has its own copies).
        kept.send(("job", replace(job, conftests=self.launch.conftests)))
        self.kept = kept
        return kept

    def release_worker(self) -> None:
        """End the kept worker, if any (its model's items are done, or its memory is needed)."""
        if self.kept is not None:
            self.kept.close()  # which forgets it

    def _fork(self) -> Worker:
        conn = self._connection()
        conn.send(("fork",))
        try:
            handle = recv_handle(conn)
        except (OSError, EOFError, RuntimeError):
            self._died("forking a worker")
        reply = self._receive("forking a worker")
        return Worker(self, reply[1], Connection(handle))

    def reap(self, pid: int) -> int:
        conn = self._connection()
        conn.send(("reap", pid))
        return int(self._receive("collecting a worker")[1])

    def close(self, wait: bool = True) -> None:
        """End the process; with ``wait=False`` only ask it to end (a session ends its sides side by side,
        then waits for each)."""
        if self.kept is not None and self._conn is not None:
            with contextlib.suppress(SideError):  # the process died: its worker is gone with it
                self.release_worker()
        if self._conn is not None:
            self._conn.close()  # the process sees end-of-file and exits
            self._conn = None
        if self._process is not None:
            if not self.facts:
                # Never ready: still importing (another side failed first), or broken; nothing to finish.
                self._process.kill()
            if not wait:
                return
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _connection(self) -> Connection:
        if self._conn is None:
            raise SideError(f"{self.name}: its process is not running")
        return self._conn

    def _receive(self, doing: str) -> Any:
        try:
            return self._connection().recv()
        except (EOFError, OSError):
            self._died(doing)

    def _died(self, doing: str) -> Any:
        code = self._process.wait() if self._process is not None else None
        raise SideError(
            f"{self.name}: its process ({self.launch.python}) ended while {doing} "
            f"({describe_exit(code)}):\n{self.stderr_tail()}"
        ) from None

    def stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-STDERR_TAIL:]


class Worker:
    """One forked worker of a side, serving its model's items in turn (``launchers.worker.serve``)."""

    def __init__(self, side: SideProcess, pid: int, conn: Connection) -> None:
        self.side = side
        self.pid = pid
        self.conn = conn
        self.exitcode: int | None = None
        self.model_key: ModelKey | None = None  # the model it holds
        self.awaited = 0  # replies asked for and not received: it is working on them
        self.doing = DOING["job"]
        self.deadline: float | None = None  # --tbench-item-timeout for its current item
        self.limit_s: float | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # it died; the next receive says how
            self.conn.send(message)
            self.awaited += 1
            self.doing = DOING.get(str(message[0]), self.doing)

    def receive(self) -> Any:
        """Its next reply, or an error Outcome naming the side if it died first or took longer than the
        item's limit (then it is ended)."""
        try:
            if self.deadline is not None and not self.conn.poll(max(0.0, self.deadline - time.monotonic())):
                self.close()  # working still: SIGTERMed, then collected
                late = ItemTimedOut(self.limit_s or 0.0, self.doing)
                return Outcome("error", message=f"{self.side.name}: {late}")
            reply = self.conn.recv()
            self.awaited -= 1
            return reply
        except (EOFError, OSError):
            self.close()
            died = WorkerDied(self.exitcode)
            return Outcome("oom" if died.killed else "error", message=f"{self.side.name}: {died.describe()}")

    def terminate(self) -> None:
        """SIGTERM it (it is this process' grandchild, not yet collected by its side, so the pid is its)."""
        if self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        """Close its socket (a worker still waiting then exits) and collect its exit code. A worker still
        working (the session was interrupted mid-round) is SIGTERMed: it would see the closed socket only
        after its item."""
        if self.awaited > 0:
            self.terminate()
        self.conn.close()
        if self.exitcode is None:
            self.exitcode = self.side.reap(self.pid)
        if self.side.kept is self:
            self.side.kept = None


def plugin_home() -> Path:
    """A directory holding only this plugin (a link to the package): put first on a side's import path,
    it makes every side run this session's plugin, and nothing else of this environment."""
    home = Path(tempfile.mkdtemp(prefix="tbench-ab-plugin-"))
    package = Path(__file__).resolve().parent.parent
    (home / package.name).symlink_to(package, target_is_directory=True)
    return home


def current_python() -> str:
    return sys.executable
