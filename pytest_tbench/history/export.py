"""A stored run back as pytest-benchmark JSON (``tbench store export``), so that ``tbench compare``,
``tbench report`` and ``pytest-benchmark compare`` read it like a saved file.

The store keeps each item's raw rounds and ``extra_info`` whole, so the entry is rebuilt from them: its
statistics by pytest-benchmark's own ``Stats`` over the rounds (the numbers it saved, to rounding), its case
from the item's coordinates. What the store does not keep is left out: pytest-benchmark's ``options`` and
``group`` of each entry (none of tbench's readers use them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tbench.core.record import CASE_FIELDS, CASE_PARAM
from pytest_tbench.history.ingest import NO_BRANCH, NO_COMMIT


def _stats(rounds: list[float], stored: Mapping[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's statistics of ``rounds``; the stored median and quartiles where no rounds were
    kept (a hand-made entry)."""
    if not rounds:
        return {"median": stored["median_s"], "q1": stored["q1_s"], "q3": stored["q3_s"], "rounds": 0}
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for value in rounds:
        stats.update(value)
    return {**stats.as_dict(), "iterations": 1, "data": rounds}  # tbench times one call a round


def bench_entry(item: Mapping[str, Any]) -> dict[str, Any]:
    """One ``benchmarks`` entry from an item row (tbench_items)."""
    extra: dict[str, Any] = json.loads(item["extra_json"])
    # The coordinates the item row holds as columns; the variant axes from extra_info (the id names them).
    known = {**extra, **{key: item[key] for key in CASE_FIELDS if key in item}}
    case = {key: known[key] for key in CASE_FIELDS if key in known}
    fullname = item["name"]
    return {
        "group": None,
        "name": fullname.rsplit("::", 1)[-1],
        "fullname": fullname,
        "params": {CASE_PARAM: case},
        "param": None,
        "extra_info": extra,
        "options": {},
        "stats": _stats([float(x) for x in json.loads(item["rounds_json"])], item),
    }


def run_document(
    run: Mapping[str, Any], measured_at: str, items: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The run's JSON from its row (tbench_runs; ``measured_at`` as ISO 8601 UTC) and its items' rows, in the
    order they were stored."""
    return {
        "machine_info": json.loads(run["machine_json"]),
        "commit_info": {
            "id": run["commit_id"] or NO_COMMIT,
            "branch": run["branch"] or NO_BRANCH,
            "dirty": bool(run["dirty"]),
        },
        "benchmarks": [bench_entry(item) for item in items],
        "datetime": measured_at,
        "version": run["pytest_benchmark_version"],
        "tbench_store": {"run_id": int(run["id"]), "source": run["source"]},
    }
