"""Judging a saved A/B run again (``tbench compare RUN.json``): each item's two sides are read back from its
JSON entry (the current side's stats and extra_info, the base side's ``ab_base``), so other criteria can be
applied without measuring again. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tbench.core.criteria import Criterion
from pytest_tbench.core.metric_table import AB, AB_BASE, ROUNDS_S
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.judge.paired import PairedVerdict, judge_paired
from pytest_tbench.judge.sequential import spent


def sides_of(bench: Mapping[str, Any]) -> tuple[ItemRecord, ItemRecord]:
    """(base, current) records of a JSON entry measured under --tbench-ab (``is_ab`` says whether it was)."""
    base_info = bench["extra_info"][AB_BASE]
    rounds = base_info.get(ROUNDS_S) or []
    base = ItemRecord.from_extra_info(bench.get("params"), base_info, {"data": rounds})
    return base, ItemRecord.from_bench(bench)


def is_ab(bench: Mapping[str, Any]) -> bool:
    info = bench.get("extra_info")
    return isinstance(info, Mapping) and isinstance(info.get(AB_BASE), Mapping)


def rejudge(run: Mapping[str, Any], criteria: Sequence[Criterion]) -> list[tuple[str, list[PairedVerdict]]]:
    """(item name, verdicts) for every A/B item of a run, in run order."""
    judged = []
    for bench in run.get("benchmarks") or []:
        if is_ab(bench):
            name = str(bench.get("name") or bench.get("fullname"))
            # Each p-value spent over the looks the item had, as when it was measured (sequential.py).
            looks = (bench["extra_info"].get(AB) or {}).get("looks")
            judged.append((name, spent(judge_paired(name, criteria, *sides_of(bench)), looks)))
    return judged
