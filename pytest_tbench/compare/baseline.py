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

from .metrics import process_counts


def _rounds_per_process(bench: dict[str, Any]) -> list[int]:
    """A run measured in one process is one group."""
    return process_counts(len(bench.get("stats", {}).get("data") or []), bench.get("extra_info", {}))


def _pool_item(benches: list[dict[str, Any]]) -> dict[str, Any]:
    newest = benches[-1]
    if len(benches) == 1:
        return newest
    stats, info = dict(newest.get("stats", {})), dict(newest.get("extra_info", {}))
    data = [x for bench in benches for x in bench.get("stats", {}).get("data") or []]
    if data:
        stats.update(data=data, median=statistics.median(data), rounds=len(data))
        info["process_rounds"] = [count for bench in benches for count in _rounds_per_process(bench)]
    ttfts = [bench.get("extra_info", {}).get("ttft_per_round_s") for bench in benches]
    if all(ttfts):
        info["ttft_per_round_s"] = [x for values in ttfts for x in values]  # type: ignore[union-attr]
    peaks = [
        bench["extra_info"]["peak_memory_bytes"]
        for bench in benches
        if "peak_memory_bytes" in bench.get("extra_info", {})
    ]
    if peaks:
        info["peak_memory_bytes"] = statistics.median(peaks)
    info["baseline_runs"] = len(benches)
    return {**newest, "stats": stats, "extra_info": info}


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
