"""``tbench store import``: saved pytest-benchmark runs (files, or folders searched for ``*.json``) into a
store, each in its own transaction; files that are not runs of tbench items are skipped with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.run_file import load_run
from pytest_tbench.history.store import Store


@dataclass
class ImportResult:
    stored: list[tuple[Path, int]] = field(default_factory=list)  # file, its new run id
    already: list[Path] = field(default_factory=list)  # runs the store held before
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # file, why it is not a run


def run_files(paths: Sequence[Path]) -> list[Path]:
    """The files given, and every ``*.json`` under the folders given (sorted, so runs go in by name: date
    order for pytest-benchmark's numbered saves); OptionError for a path that does not exist."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise OptionError(f"{str(path)!r} does not exist; give pytest-benchmark JSON files or folders")
    return list(dict.fromkeys(found))


def import_runs(store: Store, files: Sequence[Path]) -> ImportResult:
    result = ImportResult()
    for path in files:
        try:
            run = load_run(path, role="file")
            run_id = store.write_run(run, f"import:{path}")
        except OptionError as exc:
            result.skipped.append((path, str(exc).removeprefix(f"file {path} ")))
            continue
        if run_id is None:
            result.already.append(path)
        else:
            result.stored.append((path, run_id))
    return result
