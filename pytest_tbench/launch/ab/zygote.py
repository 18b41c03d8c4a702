"""The process of one A/B side (``python -m pytest_tbench.launch.ab.zygote FD``), started with that side's
interpreter and environment. It sets the side's import path, imports torch, transformers and the worker code
once, and then forks a worker per request (one per model and pair: it serves the model's items in turn,
launch/worker.py): each worker starts ready in well under a second, where a fresh
interpreter would pay the imports (about 4 s on a 2-core machine) per worker.

Only the standard library is imported at module level: the side's import path (a base revision's worktree
first) must be in place before the code under test, transformers included, is imported. Forking is safe
here for the same reason as in multiprocessing's forkserver: this process imports but never computes, so no
OpenMP or CUDA state exists to be copied.

Messages on the socket to the pytest process (multiprocessing's framing, pickled tuples):
  <- ("start", prepend, append, preload, conftests)   -> ("ready", facts) | ("error", text)
  <- ("fork",)                              -> a socket handle, then ("forked", pid)
  <- ("reap", pid)                          -> ("reaped", exit code as multiprocessing gives it)
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.reduction import send_handle
from typing import Any

# Why an A/B item records no energy: a device's counter measures the whole device, and each side's measured
# rounds alternate with the other side's on it, so no window holds one side's rounds alone.
AB_ENERGY = (
    "--tbench-ab: the two sides' rounds alternate on one device, so no meter window holds one side alone"
)


def exit_code(status: int) -> int:
    """A wait status as multiprocessing reports exit codes: negative for a signal."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def facts() -> dict[str, Any]:
    """What this side runs on, for the results: interpreter and library versions."""
    import torch
    import transformers

    return {
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "pid": os.getpid(),
    }


def start(
    conn: Connection,
    prepend: list[str],
    append: list[str],
    preload: list[str],
    conftests: list[dict[str, Any]],
) -> None:
    first = list(dict.fromkeys(prepend))
    sys.path[:] = [*first, *(p for p in sys.path if p not in first)]
    sys.path.extend(p for p in append if p not in sys.path)
    for module in preload:
        importlib.import_module(module)
    # The session's conftests (this side's copies), after the code they may patch. A failure is each
    # worker's to report, with its traceback: the side itself stays up.
    from pytest_tbench.launch import conftests as session_conftests

    session_conftests.load(session_conftests.Conftest(**conftest) for conftest in conftests)
    conn.send(("ready", facts()))


# Workers forked and not yet reaped: ended with this process (a hung worker would hold its memory, a GPU's
# too, and skew every later job on the machine).
FORKED: set[int] = set()
KILL_GRACE_S = 3.0  # after SIGTERM, before SIGKILL
REAP_GRACE_S = 5.0  # a worker whose socket closed exits at once, unless it is stuck in its item


def fork_worker(conn: Connection) -> None:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker: serves one item on its own socket and exits
        code = 1
        try:
            conn.close()
            ours.close()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pytest process' to handle
            from pytest_tbench.launch.worker import serve

            serve(Connection(theirs.detach()), energy_unavailable=AB_ENERGY)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    FORKED.add(pid)
    theirs.close()
    send_handle(conn, ours.fileno(), os.getppid())
    ours.close()
    conn.send(("forked", pid))


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pytest process ends us by closing the socket
    conn = Connection(fd)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return  # the pytest process is done (or gone)
            kind = message[0]
            if kind == "start":
                try:
                    start(conn, *message[1:])
                except BaseException:
                    conn.send(("error", traceback.format_exc()))
                    return
            elif kind == "fork":
                fork_worker(conn)
            elif kind == "reap":
                conn.send(("reaped", exit_code(reap(message[1], REAP_GRACE_S))))
    finally:
        conn.close()
        end_workers()


def reap(pid: int, grace_s: float, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGKILL)) -> int:
    """The wait status of worker ``pid``, whose socket the pytest process has closed: an idle worker exits at
    once; one still in its item (the session was interrupted) is sent ``signals`` in turn, the first past
    ``grace_s``, the next KILL_GRACE_S later: no wait here is unbounded."""
    deadline, signals_left = time.monotonic() + grace_s, list(signals)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            FORKED.discard(pid)
            return status
        if time.monotonic() >= deadline and signals_left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signals_left.pop(0))
            deadline = time.monotonic() + KILL_GRACE_S
        time.sleep(0.005)  # a reaped worker has no socket left to block on


def end_workers() -> None:
    """SIGTERM every worker still running at once (they end side by side), then collect each, SIGKILLing
    one still there past KILL_GRACE_S."""
    for pid in FORKED:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in list(FORKED):
        with contextlib.suppress(ChildProcessError):  # collected already
            reap(pid, KILL_GRACE_S, (signal.SIGKILL,))
        FORKED.discard(pid)


if __name__ == "__main__":
    main(int(sys.argv[1]))
    # Every worker is collected and the pytest process holds the results: skip the interpreter's teardown,
    # about 1.5 s with torch loaded, which the pytest process would wait for at the session's end.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
