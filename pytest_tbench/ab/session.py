"""The two sides of a session under ``--tbench-ab``: their processes, started at the first A/B item and
ended with the session, and the base revision's worktree."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ..errors import OptionError
from .side_process import Launch, SideProcess, plugin_home
from .sides import Side
from .worktree import Worktree

BASE, CURRENT = "base", "current"
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
PRELOAD = ["torch", "transformers", "pytest_tbench.ab.worker"]


class ABSession:
    def __init__(self, side: Side, rootdir: Path, ab_paths: Sequence[str] = ()) -> None:
        self.side = side
        self.rootdir = rootdir
        self.ab_paths = tuple(ab_paths)
        self.worktree: Worktree | None = None
        self.sides: dict[str, SideProcess] = {}
        self._home: Path | None = None

    def describe(self) -> dict[str, Any]:
        """The sides as the results record them."""
        base: dict[str, Any] = {"spec": self.side.label, **self.sides[BASE].facts}
        base[OMP_WAIT_POLICY] = self.sides[BASE].launch.env[OMP_WAIT_POLICY]
        if self.worktree is not None:
            base.update(revision=self.worktree.revision, commit=self.worktree.commit)
        if self.side.env:
            base["env"] = dict(self.side.env)
        current = self.sides[CURRENT]
        return {BASE: base, CURRENT: {**current.facts, OMP_WAIT_POLICY: current.launch.env[OMP_WAIT_POLICY]}}

    def open(self) -> None:
        """Check the side and check its revision out: bad input is a usage error before any item runs."""
        python = self.side.python
        if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise OptionError(f"--tbench-ab python:{python}: no executable there; give the path of a python")
        if self.side.revision is not None:
            self.worktree = Worktree.create(self.rootdir, self.side.revision)

    def started(self, modules: Sequence[str] = ()) -> dict[str, SideProcess]:
        """Both sides' processes, started on first use with ``modules`` preloaded; both import at once."""
        if self.sides:
            return self.sides
        self._home = plugin_home()
        preload = [*PRELOAD, *(m for m in modules if m not in PRELOAD)]
        sides = {
            BASE: SideProcess(f"base side ({self.side.label})", self._launch(self.side, preload)),
            CURRENT: SideProcess("current side", self._launch(Side(), preload)),
        }
        self.sides = sides
        for process in sides.values():
            process.spawn()
        for process in sides.values():
            process.wait_ready()
        return sides

    def _launch(self, side: Side, preload: list[str]) -> Launch:
        assert self._home is not None
        env = {**os.environ, **side.env}
        # Two workers share the cores, taking turns: with OpenMP's default wait policy the waiting worker's
        # threads spin on the cores the measuring one needs (tiny-gpt2 rounds went from 1.5 ms to 130 ms on
        # a 2-core machine). A policy set by the user or the side is kept (and recorded).
        env.setdefault(OMP_WAIT_POLICY, "PASSIVE")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self._home), env.get("PYTHONPATH", "")]))
        python = side.python or sys.executable
        # Another interpreter keeps its own libraries and gets this session's project directories; the
        # same interpreter gets this session's path, as multiprocessing gives its workers.
        path = list(sys.path) if side.python is None else project_dirs(sys.path)
        prepend: list[str] = []
        if side.revision is not None and self.worktree is not None:
            prepend = self.worktree.first_dirs(self.ab_paths)
            path = [self.worktree.moved(entry) or entry for entry in path]
        return Launch(python, env, [*prepend, *path], [], preload)

    def close(self) -> None:
        for process in self.sides.values():
            process.close()
        self.sides = {}
        if self.worktree is not None:
            self.worktree.remove()
            self.worktree = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None


def project_dirs(path: Sequence[str]) -> list[str]:
    """The entries of ``path`` that are not this interpreter's own (standard library, site-packages)."""
    own = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    roots = [Path(p).resolve() for p in own if p]
    dirs = []
    for entry in path:
        resolved = Path(entry or ".").resolve()
        if any(resolved == root or root in resolved.parents for root in roots):
            continue
        if resolved.name in ("site-packages", "dist-packages") or resolved.suffix == ".zip":
            continue
        dirs.append(str(resolved))
    return dirs


def open_ab(side: Side, rootdir: Path, ab_paths: Sequence[str]) -> ABSession:
    session = ABSession(side, rootdir, ab_paths)
    try:
        session.open()
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    return session
