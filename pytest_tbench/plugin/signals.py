"""SIGTERM ends a session as Ctrl-C does, so what was measured is saved.

A CI job's time limit, ``timeout`` and a cluster's pre-emption send SIGTERM, whose default action ends the
process at once: pytest's session-finish hooks never run and pytest-benchmark writes no JSON, so every item
measured so far is lost. Raised as ``KeyboardInterrupt`` instead, the item in progress stops, pytest reports
"interrupted" (exit code 2) and the JSON holds every item that finished.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import NoReturn


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: the session stops and saves what it measured")


def save_on_sigterm() -> Callable[[], None]:
    """Route SIGTERM to ``KeyboardInterrupt`` for this session; returns the undo. Leaves a handler someone
    else installed alone, and does nothing off the main thread (where Python cannot install one)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    signal.signal(signal.SIGTERM, _interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


def defer_sigterm() -> Callable[[], None]:
    """Hold SIGTERM while the session saves (pytest-benchmark writes its JSON in place: cut short, the file is
    truncated, and the next gate finds no baseline); returns the release, which puts the default back and
    delivers a SIGTERM that came meanwhile, once everything is written. Nothing off the main thread, nor where
    another handler than this module's is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, _interrupt):
        return lambda: None
    pending: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))

    def release() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if pending:
            os.kill(os.getpid(), signal.SIGTERM)

    return release
