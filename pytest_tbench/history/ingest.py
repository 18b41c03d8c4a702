"""One pytest-benchmark run JSON turned into the store's rows (schema.py), without touching a database.

A run is refused (OptionError, naming what is missing) where it is not a pytest-benchmark run of tbench
items; an entry without a tbench case (a plain pytest-benchmark test in the same session) is left out and
named in ``RunRows.left_out``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_tbench.core.axes import variant_label
from pytest_tbench.core.case_id import case_id
from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.metric_table import MEDIAN_S, METRICS, stored_unit
from pytest_tbench.core.record import Case, ItemRecord, number
from pytest_tbench.history.stored import machine_label
from pytest_tbench.history.urls import mask_values

# pytest-benchmark's commit_info outside a repository: stored as "no commit", "no branch".
NO_COMMIT = "unversioned"
NO_BRANCH = "(unknown)"
METRIC_NAME_LIMIT = 128  # tbench_metrics.name's length


@dataclass(frozen=True)
class ItemRows:
    item: dict[str, Any]  # tbench_items' columns, run_id left out
    metrics: tuple[tuple[str, float, str], ...]  # (name, value, unit) per tbench_metrics row


@dataclass(frozen=True)
class RunRows:
    run: dict[str, Any]  # tbench_runs' columns, id left out
    items: tuple[ItemRows, ...]
    left_out: tuple[str, ...] = field(default=())  # entries without a tbench case, by fullname


def measured_at(text: Any) -> datetime:
    """The run's ``datetime`` as an aware UTC time (pytest-benchmark before 4 wrote naive UTC times)."""
    if not isinstance(text, str):
        raise OptionError(f"its 'datetime' is {text!r}, not an ISO 8601 time")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OptionError(f"its 'datetime' {text!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _label(case: Case, fullname: str) -> str:
    """The model's name in the id: a local directory is named by its last part (cases.BenchCase.id), which
    the saved item's name shows even where the directory is not on this machine."""
    if ("/" in case.model or "\\" in case.model) and (
        os.path.isdir(case.model) or f"[{case_id(case, Path(case.model).name)}" in fullname
    ):
        return Path(case.model).name
    return case.model


def series_case_id(case: Case, fullname: str) -> str:
    """``<mode>-<the item's case id>``, the series' name; a bench function not named ``test_<mode>`` adds
    ``@<its name>``, so that two functions measuring the same case (another head, another input) in one
    session make two series, not one with two points per run."""
    name = f"{case.mode}-{case_id(case, _label(case, fullname))}"
    function = fullname.rsplit("::", 1)[-1].split("[", 1)[0]
    return name if function in ("", f"test_{case.mode}") else f"{name}@{function}"


def is_metric(key: str) -> bool:
    """A measured figure: a key whose suffix names its unit, or a ratio of the metric table (mfu, mbu). Not
    the item's coordinates and counts (batch_size, rounds, num_parameters): they stay in ``extra_json``."""
    return bool(stored_unit(key)) or key in METRICS


def item_rows(bench: Mapping[str, Any]) -> ItemRows | None:
    """The rows of one ``benchmarks`` entry; None where it has no tbench case."""
    record = ItemRecord.from_bench(bench)
    case = record.case
    if case is None:
        return None
    stats = bench.get("stats") if isinstance(bench.get("stats"), Mapping) else {}
    assert isinstance(stats, Mapping)
    extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), Mapping) else {}
    metrics = {
        key: value
        for key, raw in (extra or {}).items()
        if (value := number(raw)) is not None and len(key) <= METRIC_NAME_LIMIT and is_metric(key)
    }
    median = record.metric(MEDIAN_S)
    if median is not None:
        metrics.setdefault(MEDIAN_S, median)
    rounds = list(record.samples)
    item = {
        "name": record.fullname,
        "case_id": series_case_id(case, record.fullname),
        "model": case.model,
        "mode": case.mode,
        "head": case.head,
        "batch_size": case.batch_size,
        "seq_len": case.seq_len,
        "new_tokens": case.new_tokens,
        "device": case.device,
        "dtype": case.dtype,
        "media": case.media,
        "variant": variant_label(vars(case)),
        "median_s": number(stats.get("median")) if number(stats.get("median")) is not None else median,
        "q1_s": number(stats.get("q1")),
        "q3_s": number(stats.get("q3")),
        "stddev_s": number(stats.get("stddev")),
        "rounds": int(stats.get("rounds") or len(rounds)),
        "rounds_json": json.dumps(rounds),
        "extra_json": json.dumps(mask_values(extra or {})),
    }
    _check_lengths(record.fullname, item)
    return ItemRows(item, tuple((key, value, stored_unit(key)) for key, value in metrics.items()))


def _check_lengths(name: str, item: Mapping[str, Any]) -> None:
    """PostgreSQL refuses a value longer than its column (a registered mode's long name); SQLite would store
    it. Refused here, alike on both, naming the item and the column."""
    from pytest_tbench.history.schema import items

    for column in items.columns:
        limit = getattr(column.type, "length", None)
        value = item.get(column.name)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise OptionError(
                f"item {name}: its {column.name} {value!r} is longer than the store's {limit} characters"
            )


def run_key(run: Mapping[str, Any]) -> str:
    """What identifies a run, digested: its date, host, commit and every item with its rounds."""
    machine = run.get("machine_info") or {}
    commit = run.get("commit_info") or {}
    items = sorted(
        (str(b.get("fullname")), (b.get("stats") or {}).get("data") or (b.get("stats") or {}).get("median"))
        for b in run["benchmarks"]
    )
    identity = [run.get("datetime"), machine.get("node"), commit.get("id"), items]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_rows(run: Mapping[str, Any], source: str, tbench_version: str = "") -> RunRows:
    """The rows of a run; OptionError where it is not a pytest-benchmark run or holds no tbench item."""
    if not isinstance(run, Mapping) or not isinstance(run.get("benchmarks"), list):
        raise OptionError("not a pytest-benchmark run: it has no 'benchmarks' list")
    machine = run.get("machine_info") if isinstance(run.get("machine_info"), Mapping) else {}
    commit = run.get("commit_info") if isinstance(run.get("commit_info"), Mapping) else {}
    assert isinstance(machine, Mapping) and isinstance(commit, Mapping)
    when = measured_at(run.get("datetime"))
    items, left_out = [], []
    for bench in run["benchmarks"]:
        rows = item_rows(bench) if isinstance(bench, Mapping) else None
        if rows is None:
            left_out.append(str(bench.get("fullname", "?")) if isinstance(bench, Mapping) else repr(bench))
        else:
            items.append(rows)
    if not items:
        raise OptionError(
            f"no tbench item among its {len(run['benchmarks'])} benchmarks (entries without a tbench case)"
        )
    tbench = machine.get("tbench") if isinstance(machine.get("tbench"), Mapping) else {}
    assert isinstance(tbench, Mapping)
    commit_id = str(commit.get("id") or "")
    branch = str(commit.get("branch") or "")
    row = {
        "run_key": run_key(run),
        "measured_at": when,
        "commit_id": "" if commit_id == NO_COMMIT else commit_id,
        "branch": "" if branch == NO_BRANCH else branch,
        "dirty": bool(commit.get("dirty")),
        "machine": machine_label(machine),
        "machine_json": json.dumps(mask_values(dict(machine)), default=str),
        "settings_json": json.dumps(mask_values(tbench.get("settings") or {}), default=str),
        "tbench_version": tbench_version,
        "pytest_benchmark_version": str(run.get("version") or ""),
        "source": source,
    }
    return RunRows(row, tuple(items), tuple(left_out))
