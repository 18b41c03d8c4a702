"""Shards of one run, measured apart (pytest-split groups on several machines), joined into one run:
``tbench merge shard1.json shard2.json ... -o run.json``.

The merged file is a pytest-benchmark run like any other, so ``tbench compare``, ``tbench report``,
``pytest-benchmark compare`` and the gate (``--tbench-compare run.json``) read it unchanged. What it takes
from where:

- ``benchmarks``: every shard's items, shard by shard in the order given (each shard in its own order);
- ``machine_info``, ``commit_info``, ``version``: the first shard's (the shards are checked to agree);
- ``datetime``: the latest shard's, as pytest-benchmark dates a run when it is saved, and a sharded run is
  complete when its last shard is;
- ``tbench.not_measured``: the shards' lists joined;
- ``tbench.shards``: one entry per input (``ShardRecord``); a merged run given as input brings its own
  entries, so merging merged runs keeps the original shards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.run_file import load_run
from pytest_tbench.judge.runs import machine_differences, not_measured

# Duplicate items named in a refusal; the rest are counted.
_NAMED_DUPLICATES = 5


@dataclass(frozen=True)
class ShardRecord:
    """One shard of a merged run, as ``tbench.shards`` lists it."""

    path: str  # the file as given to tbench merge
    datetime: str | None  # when the shard's run was saved (pytest-benchmark's datetime)
    node: str | None  # the machine's host name (pytest-benchmark's machine_info.node)
    commit: str | None  # commit_info.id
    items: int  # measured items
    not_measured: int  # items skipped, errored or interrupted
    # How its machine differs from the first shard's, when merged with --any-machine; [] when it does not.
    machine_differences: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Merged:
    """The merged run (pytest-benchmark JSON) and what the merge has to say about it."""

    run: dict[str, Any]
    shards: list[ShardRecord]
    notes: list[str]  # differences that do not stop a merge (settings), one line each

    @property
    def items(self) -> int:
        return len(self.run["benchmarks"])

    @property
    def not_measured(self) -> int:
        return len(self.run["tbench"]["not_measured"])


def _names(run: dict[str, Any]) -> list[str]:
    """Every item a shard ran: measured, and skipped / errored / interrupted."""
    return [str(bench.get("fullname", bench.get("name"))) for bench in run["benchmarks"]] + list(
        not_measured(run)
    )


def _duplicates(shards: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The items found in two shards, each as 'ITEM in A.json and B.json'."""
    owner: dict[str, str] = {}
    found = []
    for path, run in shards:
        for name in dict.fromkeys(_names(run)):
            if name in owner:
                found.append(f"{name} in {owner[name]} and {path}")
            else:
                owner[name] = path
    return found


def _commit(run: dict[str, Any]) -> str | None:
    info = run.get("commit_info")
    commit = info.get("id") if isinstance(info, dict) else None
    return str(commit) if commit else None


def _settings(run: dict[str, Any]) -> dict[str, Any]:
    """The tbench settings the shard was run with (name -> value; machine_info.tbench.settings)."""
    recorded = run.get("machine_info", {}).get("tbench", {}).get("settings") or {}
    return {k: v.get("value") if isinstance(v, dict) else v for k, v in recorded.items()}


def _setting_notes(first: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]]) -> list[str]:
    (a, left), (b, right) = (first[0], _settings(first[1])), (other[0], _settings(other[1]))
    return [
        f"setting {key}: {a} {left.get(key)!r}, {b} {right.get(key)!r}"
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    ]


def _latest(dates: list[str | None]) -> str | None:
    """The latest of ISO dates (pytest-benchmark writes them with a UTC offset); the first one where any
    cannot be read, rather than a guess."""
    known = [d for d in dates if d]
    try:
        return max(known, key=datetime.fromisoformat) if known else None
    except (TypeError, ValueError):
        return known[0]


def _records(path: str, run: dict[str, Any], differences: list[str]) -> list[ShardRecord]:
    earlier = run.get("tbench", {}).get("shards")
    if isinstance(earlier, list) and earlier:  # a merged run: its own shards, not itself
        # core/run_file.py checked that the entries have the required fields
        known = {f.name for f in fields(ShardRecord)}
        return [ShardRecord(**{k: v for k, v in entry.items() if k in known}) for entry in earlier]
    return [
        ShardRecord(
            path=path,
            datetime=run.get("datetime"),
            node=run.get("machine_info", {}).get("node"),
            commit=_commit(run),
            items=len(run["benchmarks"]),
            not_measured=len(not_measured(run)),
            machine_differences=differences,
        )
    ]


def merge_runs(
    shards: list[tuple[str, dict[str, Any]]], any_machine: bool = False, any_commit: bool = False
) -> Merged:
    """One run from ``shards`` (a name, usually the file, and its pytest-benchmark JSON, in order); an
    OptionError naming what is wrong when the same item is in two shards, or (unless told) when the shards
    come from different machines or software, or from different commits."""
    if not shards:
        raise OptionError("no shard to merge; give the shards' JSON files (--benchmark-json of each shard)")
    given = [path for path, _ in shards]
    twice = sorted({path for path in given if given.count(path) > 1})
    if twice:
        raise OptionError(f"{', '.join(twice)} given twice; give each shard's file once")
    duplicates = _duplicates(shards)
    if duplicates:
        more = len(duplicates) - _NAMED_DUPLICATES
        raise OptionError(
            "the same item is in two shards: "
            + "; ".join(duplicates[:_NAMED_DUPLICATES])
            + (f"; and {more} more" if more > 0 else "")
            + ". Each item must run in one shard only: run every shard on the same collected items with the "
            "same --splits N and its own --group"
        )
    (first_path, first), others = shards[0], shards[1:]
    differences = {path: machine_differences(first, run, (first_path, path)) for path, run in others}
    if not any_machine:
        refused = [f"{path}: {'; '.join(found)}" for path, found in differences.items() if found]
        if refused:
            raise OptionError(
                f"the shards come from different machines or software than {first_path} ("
                + " | ".join(refused)
                + "); their timings are not one run. Pass --any-machine to merge anyway"
            )
    commits = {path: _commit(run) for path, run in shards}
    if not any_commit and len({c for c in commits.values() if c}) > 1:
        listed = ", ".join(f"{path} {commit}" for path, commit in commits.items() if commit)
        raise OptionError(
            f"the shards measured different commits ({listed}); run every shard on the same commit, or pass "
            "--any-commit to merge anyway"
        )
    records = [r for path, run in shards for r in _records(path, run, differences.get(path, []))]
    skipped = [entry for _, run in shards for entry in run.get("tbench", {}).get("not_measured", [])]
    merged = {
        **first,
        "benchmarks": [bench for _, run in shards for bench in run["benchmarks"]],
        "datetime": _latest([run.get("datetime") for _, run in shards]),
        "tbench": {
            **first.get("tbench", {}),
            "not_measured": skipped,
            "shards": [record.as_json() for record in records],
        },
    }
    notes = [note for other in others for note in _setting_notes(shards[0], other)]
    return Merged(merged, records, notes)


def merge_files(paths: list[Path], any_machine: bool = False, any_commit: bool = False) -> Merged:
    """``merge_runs`` of the shards' files; an OptionError names a file that is not a pytest-benchmark run."""
    return merge_runs([(str(path), load_run(path, role="shard")) for path in paths], any_machine, any_commit)
