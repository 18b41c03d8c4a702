"""The base revision's source tree: a detached ``git worktree`` of the repository under test, made for the
session and removed at its end, and the import path that puts it first."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionError


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OptionError(
            f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip()


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
        path = Path(tempfile.mkdtemp(prefix="tbench-ab-base-")) / "tree"
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
        subprocess.run(
            ["git", "-C", str(self.repo), "worktree", "remove", "--force", str(self.path)],
            capture_output=True,
        )
        shutil.rmtree(self.path.parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(self.repo), "worktree", "prune"], capture_output=True)
