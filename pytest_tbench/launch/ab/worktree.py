"""The base revision's source tree: a detached ``git worktree`` of the repository under test, made for the
session and removed at its end, and the import path that puts it first.

A session killed before its end (SIGKILL, a lost runner) leaves its worktree, a full checkout, behind; on a
self-hosted runner they pile up. Each worktree's folder names its owner (pid and host), and the next
session of the same repository removes those whose owner is gone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_tbench.core.errors import OptionError


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OptionError(
            f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip()


PREFIX = "tbench-ab-base-"
OWNER = "owner"  # "PID HOST" of the session that made the worktree, beside it


def _abandoned(folder: Path) -> bool:
    """Whether the session that made ``folder`` is gone: its pid runs nothing on this host. A folder of
    another host, or one that cannot be read, is left alone."""
    try:
        pid_text, host = (folder / OWNER).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def sweep(repo: Path) -> list[Path]:
    """Remove the tbench worktrees of ``repo`` whose session is gone; the paths removed."""
    listed = _git(repo, "worktree", "list", "--porcelain")
    removed = []
    for line in listed.splitlines():
        path = Path(line.removeprefix("worktree ")) if line.startswith("worktree ") else None
        if path is not None and path.parent.name.startswith(PREFIX) and _abandoned(path.parent):
            _remove(repo, path)
            removed.append(path)
    return removed


def _remove(repo: Path, path: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)
    shutil.rmtree(path.parent, ignore_errors=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


@dataclass(frozen=True)
class Worktree:
    repo: Path  # the repository under test (its top level)
    path: Path  # the base revision checked out
    revision: str  # as given
    commit: str  # what it resolved to

    @classmethod
    def create(cls, start: Path, revision: str) -> Worktree:
        """Check ``revision`` of the repository holding ``start`` out into a fresh directory."""
        if shutil.which("git") is None:
            raise OptionError(f"--tbench-ab {revision}: git is not installed")
        try:
            repo = Path(_git(start, "rev-parse", "--show-toplevel"))
        except OptionError:
            raise OptionError(
                f"--tbench-ab {revision}: {start} is not inside a git repository; run pytest from the "
                "repository whose revision is the base, or compare interpreters (python:PATH) instead"
            ) from None
        try:
            commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except OptionError:
            raise OptionError(
                f"--tbench-ab {revision}: not a revision of the repository at {repo} (try `git fetch`, or "
                "name a branch, tag or commit that `git rev-parse` knows)"
            ) from None
        sweep(repo)
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        (folder / OWNER).write_text(f"{os.getpid()} {socket.gethostname()}\n")
        path = folder / "tree"
        _git(repo, "worktree", "add", "--detach", str(path), commit)
        return cls(repo, path, revision, commit)

    def first_dirs(self, dirs: Sequence[str]) -> list[str]:
        """The worktree's directories put first on the base workers' import path: ``dirs``
        (``--tbench-ab-path``), by default ``src`` where the tree has one, else its top level."""
        chosen = list(dirs) or (["src"] if (self.path / "src").is_dir() else ["."])
        return [str((self.path / d).resolve()) for d in chosen]

    def moved(self, entry: str) -> str | None:
        """``entry`` inside the repository, as the same place in the worktree; None outside it."""
        try:
            relative = Path(entry or ".").resolve().relative_to(self.repo.resolve())
        except ValueError:
            return None
        return str(self.path / relative)

    def remove(self) -> None:
        _remove(self.repo, self.path)
