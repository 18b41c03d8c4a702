"""Judging a saved A/B run again (``tbench compare RUN.json``): each item's two sides are read back from its
JSON entry (the current side's stats and extra_info, the base side's ``ab_base``), so other criteria can be
applied without measuring again. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..compare.criteria import Criterion
from ..metric_table import AB_BASE, ROUNDS_S
from ..record import ItemRecord
from .paired import PairedVerdict, judge_paired


def sides_of(bench: Mapping[str, Any]) -> tuple[ItemRecord, ItemRecord] | None:
    """(base, current) records of a JSON entry measured under --tbench-ab; None for any other entry."""
    info = bench.get("extra_info")
    base_info = info.get(AB_BASE) if isinstance(info, Mapping) else None
    if not isinstance(base_info, Mapping):
        return None
    rounds = base_info.get(ROUNDS_S) or []
    base = ItemRecord.from_extra_info(bench.get("params"), base_info, {"data": rounds})
    return base, ItemRecord.from_bench(bench)


def rejudge(run: Mapping[str, Any], criteria: Sequence[Criterion]) -> list[tuple[str, list[PairedVerdict]]]:
    """(item name, verdicts) for every A/B item of a run, in run order."""
    judged = []
    for bench in run.get("benchmarks") or []:
        sides = sides_of(bench)
        if sides is not None:
            name = str(bench.get("name") or bench.get("fullname"))
            judged.append((name, judge_paired(name, criteria, *sides)))
    return judged
