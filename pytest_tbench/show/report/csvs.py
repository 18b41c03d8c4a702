"""CSV files: one per mode with a row per item, the environment as key/value rows (like the classic
``save_to_csv``), and the unit of every column.

Units live in the column names (``_s`` seconds, ``_bytes`` bytes, ``_per_s`` per second), as in the JSON's
``extra_info`` keys, so the files stay plain one-header CSV; ``units.csv`` spells each column's unit out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_tbench.core.metric_table import stored_unit
from pytest_tbench.show.report.frame import ITEM_COORDINATES, STATS_KEYS, Row, Run, slug
from pytest_tbench.show.report.variants import variant_columns, variant_groups, variant_record

IDENTITY_COLUMNS = ("run", "fullname", *ITEM_COORDINATES)
STATS_COLUMNS = tuple(f"stats_{k}" if k == "rounds" else f"stats_{k}_s" for k in STATS_KEYS)
_IDENTITY_UNITS = {"batch_size": "samples", "seq_len": "tokens", "new_tokens": "tokens"}
_COUNT_SUFFIXES = ("_count", "_per_round", "_per_call", "rounds", "_steps", "_calls")


def unit_of(column: str) -> str:
    """The unit a column's name carries; "count" for counts, "" for text and dimensionless numbers."""
    if column in _IDENTITY_UNITS:
        return _IDENTITY_UNITS[column]
    if column in IDENTITY_COLUMNS:
        return ""
    if unit := stored_unit(column):
        return unit
    if column.startswith("num_") or column.endswith(_COUNT_SUFFIXES):
        return "count"
    return ""


def extra_columns(rows: Iterable[Row]) -> list[str]:
    """Every scalar extra_info key of these rows, sorted, so that the columns do not depend on item order."""
    return sorted({key for row in rows for key in row.extra})


def item_columns(rows: list[Row]) -> list[str]:
    return [*IDENTITY_COLUMNS, *STATS_COLUMNS, *extra_columns(rows)]


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such text gets a
# leading apostrophe, which spreadsheets show as text. Numbers are left as they are.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def item_record(row: Row) -> dict[str, Any]:
    record: dict[str, Any] = {column: getattr(row, column) for column in IDENTITY_COLUMNS}
    for key, column in zip(STATS_KEYS, STATS_COLUMNS, strict=True):
        value = row.stats.get(key)
        record[column] = int(value) if key == "rounds" and value is not None else value
    record.update(row.extra)
    return record


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for index, inner in enumerate(value):
            yield from _flatten(f"{prefix}.{index}", inner)
    elif isinstance(value, list):
        yield prefix, json.dumps(value)
    else:
        yield prefix, value


def environment_rows(run: Run) -> list[tuple[str, str, Any]]:
    """(run, key, value): this plugin's environment record, flattened, plus when and from which commit."""
    rows = [(run.label, key, value) for key, value in _flatten("", run.environment)]
    commit = run.data.get("commit_info") or {}
    for key in ("id", "branch", "dirty"):
        if key in commit:
            rows.append((run.label, f"commit.{key}", commit[key]))
    if "datetime" in run.data:
        rows.append((run.label, "datetime", run.data["datetime"]))
    return rows


def write_csvs(runs: list[Run], out_dir: Path) -> list[Path]:
    rows = [row for run in runs for row in run.rows]
    written: list[Path] = []
    all_columns: list[str] = []
    for mode in dict.fromkeys(row.mode for row in rows):
        mode_rows = [row for row in rows if row.mode == mode]
        columns = item_columns(mode_rows)
        all_columns.extend(c for c in columns if c not in all_columns)
        path = out_dir / f"items_{slug(mode)}.csv"  # the mode comes from the run file
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for row in mode_rows:
                writer.writerow({k: _cell(v) for k, v in item_record(row).items()})
        written.append(path)

    groups = variant_groups(rows)
    if groups:  # items measured under several variants: one row per variant, with its speedups
        columns = variant_columns(groups)
        all_columns.extend(c for c in columns if c not in all_columns)
        path = out_dir / "variants.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for group in groups:
                writer.writerows({k: _cell(v) for k, v in variant_record(entry).items()} for entry in group)
        written.append(path)

    path = out_dir / "environment.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer_env = csv.writer(handle)
        writer_env.writerow(["run", "key", "value"])
        for run in runs:
            writer_env.writerows((r, k, _cell(v)) for r, k, v in environment_rows(run))
    written.append(path)

    path = out_dir / "units.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer_units = csv.writer(handle)
        writer_units.writerow(["column", "unit"])
        writer_units.writerows((column, unit_of(column)) for column in all_columns)
    written.append(path)
    return written
