"""Several saved runs of the same items as one baseline (``--tbench-compare-last N``, ``tbench compare A B
CURRENT``).

One session is one draw of the machine's state: on a small VM the same code's median moves by several
percent from one session to the next, and a baseline taken in a lucky (fast) session makes every later run
look slower. Pooled, each item keeps the rounds of every run, and its per-process groups (a run measured in
one process is one group), so that the gate's significance test sees the spread between sessions too.
"""

from __future__ import annotations

import statistics
from typing import Any

from pytest_tbench.core.metric_table import (
    BASELINE_RUN_ROUNDS,
    BASELINE_RUNS,
    PEAK_MEMORY_BYTES,
    TTFT_PER_ROUND_S,
)
from pytest_tbench.core.record import ItemRecord


def _pool_item(benches: list[dict[str, Any]]) -> dict[str, Any]:
    newest = benches[-1]
    if len(benches) == 1:
        return newest
    records = [ItemRecord.from_bench(bench) for bench in benches]
    stats, info = dict(newest.get("stats", {})), dict(records[-1].metrics)
    process_rounds = records[-1].process_rounds
    data = [x for record in records for x in record.samples]
    if data:
        stats.update(data=data, median=statistics.median(data), rounds=len(data))
        # A run measured in one process is one group.
        process_rounds = tuple(n for r in records for n in r.rounds_per_process(len(r.samples)))
    ttfts = [record.metrics.get(TTFT_PER_ROUND_S) for record in records]
    if all(ttfts):
        info[TTFT_PER_ROUND_S] = [x for values in ttfts for x in values]  # type: ignore[union-attr]
    peaks = [peak for record in records if (peak := record.metrics.get(PEAK_MEMORY_BYTES)) is not None]
    if peaks:
        info[PEAK_MEMORY_BYTES] = statistics.median(peaks)
    info[BASELINE_RUNS] = len(benches)
    if data:
        info[BASELINE_RUN_ROUNDS] = [len(record.samples) for record in records]
    pooled = ItemRecord(records[-1].case, (), process_rounds, info)
    return {**newest, "stats": stats, "extra_info": pooled.to_extra_info()}


def pool_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One baseline from ``runs`` (oldest first): every item's rounds of all runs that measured it, the
    median of their peak memory, and the newest run's machine info; an item counts as not measured only
    when no run measured it."""
    if len(runs) == 1:
        return runs[0]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for bench in run["benchmarks"]:
            by_name.setdefault(bench["fullname"], []).append(bench)
    not_measured: dict[str, dict[str, str]] = {}
    for run in runs:
        for entry in run.get("tbench", {}).get("not_measured", []):
            if entry["fullname"] not in by_name:
                not_measured[entry["fullname"]] = entry
    return {
        **runs[-1],
        "benchmarks": [_pool_item(benches) for benches in by_name.values()],
        "tbench": {"not_measured": list(not_measured.values())},
    }
