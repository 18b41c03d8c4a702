"""A saved run read from its file: a pytest-benchmark JSON run as every reader (the gate, compare, merge,
report, store import) takes it, refused by name where it is not one. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_tbench.core.errors import OptionError


def load_run(path: Path, role: str = "baseline") -> dict[str, Any]:
    """A pytest-benchmark JSON file, or an OptionError naming the file (as ``role``: a baseline, a run) and
    what is wrong with it."""
    if not path.is_file():
        raise OptionError(f"{role} {str(path)!r} does not exist or is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptionError(f"{role} {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise OptionError(f"{role} {path} is not a pytest-benchmark run: it has no 'benchmarks' list")
    problem = shape_problem(data)
    if problem:
        raise OptionError(f"{role} {path} is not a pytest-benchmark run as tbench reads it: {problem}")
    return data


# The parts of a run file every reader (the gate, compare, merge, report, store import) takes as given: where
# one is of another type, the file is refused here, by name, instead of failing deep inside a reader.
_MAPPINGS = ("machine_info", "commit_info", "tbench")


_ENTRY_MAPPINGS = ("stats", "extra_info", "params")


SHARD_KEYS = ("path", "datetime", "node", "commit", "items", "not_measured")  # a merged run's tbench.shards


def shape_problem(data: dict[str, Any]) -> str | None:
    """What in a run file is not of the type pytest-benchmark and tbench write; None: nothing."""
    for key in _MAPPINGS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"its {key!r} is a {type(data[key]).__name__}, not a mapping"
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            return f"benchmarks[{index}] is a {type(bench).__name__}, not a mapping"
        for key in _ENTRY_MAPPINGS:
            if bench.get(key) is not None and not isinstance(bench[key], dict):
                return f"benchmarks[{index}].{key} is a {type(bench[key]).__name__}, not a mapping"
        if not isinstance(bench.get("fullname"), str):
            return f"benchmarks[{index}] has no item id (a 'fullname' string, which pytest-benchmark writes)"
    tbench = data.get("tbench") or {}
    for key, needs in (("not_measured", ("fullname", "outcome")), ("shards", SHARD_KEYS)):
        entries = tbench.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(k in e for k in needs) for e in entries
        ):
            return f"its tbench.{key} is not a list of entries with {', '.join(needs)}"
    return None


def find_saved_runs(storage: Path, run: str | None, last: int = 1) -> list[Path]:
    """``run`` as a JSON path, or the newest ``last`` saved runs (oldest first) in this machine's
    pytest-benchmark storage folder, those whose name starts with ``run`` where it is given."""
    if run and (run.endswith(".json") or Path(run).is_file()):
        if not Path(run).is_file():
            raise OptionError(f"baseline {run!r} does not exist; give a saved run (e.g. 0001) or a JSON path")
        if last > 1:
            raise OptionError(
                f"{run!r} is one file, and --tbench-compare-last {last} pools the newest saved runs; "
                "give a saved run's name prefix, or no run, to pool several"
            )
        return [Path(run)]
    saved = sorted(storage.glob("*.json")) if storage.is_dir() else []
    if run:
        saved = [p for p in saved if p.name.startswith(run)]
    if not saved:
        what = f"run {run!r}" if run else "any saved run"
        raise OptionError(
            f"no baseline: {what} not found in {storage}; save one with --benchmark-autosave or "
            "--benchmark-save NAME, or pass --tbench-compare=PATH.json"
        )
    return sorted(saved, key=lambda p: p.name)[-last:]
