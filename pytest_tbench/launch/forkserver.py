"""Running one job in a fresh worker process, forked from a forkserver that has torch preloaded.

Measured on a 2-core machine: starting the forkserver costs about 5 s once (with the session's modeling
modules), each item about 0.4 s beyond loading its model and measuring; plain spawn would cost the imports
(about 3 s) per item, and plain fork can deadlock once OpenMP has run in the parent. The parent blocks on
the pipe and the worker's sentinel together, so it uses no CPU while the worker measures, and learns at once
if the worker dies.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait

from pytest_tbench.launch.base import Job
from pytest_tbench.launch.conftests import exported
from pytest_tbench.launch.preload import preload_modules
from pytest_tbench.launch.worker import Outcome, worker_main

# Set in a process that forks workers: a preloaded module (a user's conftest) that asks
# torch.cuda.is_available() at import would otherwise start the CUDA driver there, after which torch refuses
# CUDA in every forked worker ("Cannot re-initialize CUDA in forked subprocess"). With it, torch answers from
# NVML and leaves the driver alone. A value the user set is kept.
FORK_SAFE_ENV = {"PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
# Imported last by the forkserver: the session's conftests, after the models' code they may patch.
CONFTESTS_MODULE = "pytest_tbench.launch.preload_conftests"


class ItemTimedOut(RuntimeError):
    """A worker took longer than --tbench-item-timeout for its item (it is ended)."""

    def __init__(self, limit_s: float, doing: str) -> None:
        super().__init__(
            f"the worker exceeded --tbench-item-timeout {limit_s:g} s while {doing}; it was ended"
        )


# What a worker is doing while the parent waits for its reply to each message (worker.py's protocol).
DOING = {"job": "loading the model and warming up", "rounds": "measuring its rounds", "stop": "finishing"}


class WorkerDied(RuntimeError):
    """The worker ended without sending a result (a crash or a kill)."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
        super().__init__(f"worker process died before reporting: {describe_exit(exitcode)}")

    @property
    def killed(self) -> bool:
        """SIGKILL from outside: on Linux almost always the kernel's OOM killer."""
        return self.exitcode == -signal.SIGKILL

    def describe(self) -> str:
        """The message, with the likely cause of a SIGKILL."""
        return f"{self} (SIGKILL: most likely the kernel's OOM killer)" if self.killed else str(self)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit code"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@contextlib.contextmanager
def fork_safe_environment() -> Iterator[None]:
    """FORK_SAFE_ENV in this process' environment while a forkserver may start (it inherits it), then as
    before."""
    added = {key: value for key, value in FORK_SAFE_ENV.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*preload_modules(), CONFTESTS_MODULE])
    return context


def run_isolated(job: Job, target: Callable[[Connection, Job], None] = worker_main) -> Outcome:
    """``job`` in a fresh worker (``target``, given the job): its warm-up, then all its rounds at once."""
    context = _context()
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(theirs, job), name="tbench-worker", daemon=True)  # type: ignore[attr-defined]
    with exported(job.conftests), fork_safe_environment():  # for the forkserver, if this start starts it
        process.start()
    theirs.close()  # the worker holds the only other end: its death makes recv() fail, not hang
    interrupted = True
    try:
        outcome = _converse(ours, process.sentinel, job.rounds, job.item_timeout)
        interrupted = False
    finally:
        ours.close()  # a worker still waiting for its next job sees end-of-file and exits
        # Interrupted (SIGTERM or Ctrl-C in this process) while the worker measures: it is ended now, not
        # waited for, so that the session saves and exits within a stop's grace period.
        end_process(process, 0.0 if interrupted else EXIT_GRACE_S)
    if outcome is None:
        raise WorkerDied(process.exitcode)
    return outcome


EXIT_GRACE_S = 30.0  # a worker that sent its outcome frees its memory and exits; past this it is ended
KILL_GRACE_S = 3.0  # after SIGTERM, before SIGKILL


def end_process(process: multiprocessing.process.BaseProcess, grace_s: float) -> None:
    """Wait up to ``grace_s`` for ``process`` to exit, then SIGTERM it and, past KILL_GRACE_S, SIGKILL: no
    wait is unbounded, and no worker outlives its item."""
    process.join(grace_s)
    if process.exitcode is None:
        process.terminate()
        process.join(KILL_GRACE_S)
    if process.exitcode is None:
        process.kill()
        process.join()


def _converse(conn: Connection, sentinel: int, rounds: int, limit_s: float | None = None) -> Outcome | None:
    """The parent's side of one job (worker.py): the rounds after the warm-up, then the outcome; None if the
    worker died first; ItemTimedOut past ``limit_s`` (the whole item's)."""
    deadline = None if limit_s is None else time.monotonic() + limit_s
    doing = DOING["job"]
    for message in (("rounds", rounds), ("stop",), None):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        # Blocked, not polling: the worker has the CPU to itself.
        if not wait([conn, sentinel], left):
            assert limit_s is not None
            raise ItemTimedOut(limit_s, doing)
        try:
            reply = conn.recv()
        except EOFError:
            return None
        if isinstance(reply, Outcome):
            return reply
        if message is not None:
            conn.send(message)
            doing = DOING[str(message[0])]
    raise AssertionError("a worker replied to stop with something other than its outcome")
