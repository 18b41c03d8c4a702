"""The terminal table of an A/B session: per item and criterion, both sides' figures and the paired change
with its interval. Torch-free: it reads the items' extra_info."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tabulate import tabulate

from pytest_tbench.core.metric_table import AB
from pytest_tbench.judge.judge import REGRESSED, format_value
from pytest_tbench.judge.paired import ITEM_MEMORY_FLOOR_BYTES
from pytest_tbench.judge.profile_diff import where_line
from pytest_tbench.judge.run_verdict import RunVerdict
from pytest_tbench.judge.sides_code import code_line
from pytest_tbench.models.code import MODEL_CODE

AB_HEADERS = ["item", "criterion", "base", "current", "change [CI]", "verdict"]
AB_LEGEND = (
    "base/current: each side's median (memory: the item's own, its peak over its process's start, the mean "
    "over pairs); change: current/base from paired rounds with its confidence interval over process pairs "
    "(memory: the mean paired difference over the base's own; what counts is the threshold or the "
    f"{ITEM_MEMORY_FLOOR_BYTES // 2**20} MiB floor, whichever is larger). Verdicts are the run's: a "
    "regression is confirmed among all its tests."
)


def ab_rows(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[list[str]]:
    """One row per (item, verdict) of items measured under --tbench-ab; ``items``: (item id, extra_info)."""
    rows = []
    for item, info in items:
        found = info.get(AB)
        if not isinstance(found, Mapping):
            continue
        for verdict in found.get("verdicts") or []:
            unit = str(verdict["unit"])
            change = f"{verdict['change']:+.1%}"
            if verdict.get("low") is not None:
                change += f" [{verdict['low']:+.1%}, {verdict['high']:+.1%}]"
            rows.append(
                [
                    item,
                    str(verdict["criterion"]),
                    format_value(verdict["base"], unit),
                    format_value(verdict["current"], unit),
                    change,
                    str(verdict["status"]),
                ]
            )
    return rows


def ab_advice(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """A line per "cannot tell" verdict: what would decide it (more pairs, or more rounds)."""
    lines = []
    for item, info in items:
        found = info.get(AB)
        if isinstance(found, Mapping):
            for verdict in found.get("verdicts") or []:
                if verdict.get("advice"):
                    lines.append(f"{item} {verdict['criterion']}: {verdict['status']}: {verdict['advice']}")
    return lines


def ab_table(items: Iterable[tuple[str, Mapping[str, Any]]], markdown: bool = False) -> str | None:
    items = list(items)
    rows = ab_rows(items)
    if not rows:
        return None
    style = "github" if markdown else "simple"
    table = tabulate(rows, AB_HEADERS, tablefmt=style, disable_numparse=True) + "\n" + AB_LEGEND
    return "\n".join([table, *ab_advice(items)])


def ab_title(items: Iterable[Mapping[str, Any]]) -> str:
    """The table's title: the base side and how it was interleaved, from the first A/B item."""
    for info in items:
        found = info.get(AB)
        if isinstance(found, Mapping):
            spec = found.get("sides", {}).get("base", {}).get("spec", "?")
            return (
                f"tbench A/B vs {spec} (interleaved, {found.get('pairs')} process pairs x "
                f"{found.get('paired_rounds_per_pair')} paired rounds)"
            )
    return "tbench A/B"


def ab_failures(items: Iterable[tuple[str, Mapping[str, Any]]], run: RunVerdict) -> list[str]:
    """What failed the run: each regressed item's verdicts, the whole run's change where it regressed, and
    the undecided items where --tbench-ab-undecided fail counts them."""
    lines = []
    regressed = set(run.regressed)
    undecided = set(run.undecided) if run.undecided_mode == "fail" else set()
    for item, info in items:
        found = info.get(AB)
        if not isinstance(found, Mapping) or item not in regressed | undecided:
            continue
        why = "REGRESSED" if item in regressed else "cannot tell (--tbench-ab-undecided fail)"
        lines.append(f"{item}: {why}")
        lines.extend(f"  {verdict['text']}" for verdict in found.get("verdicts") or [])
        code = code_line(found.get(MODEL_CODE) or {})  # whether the sides ran other model code at all
        if code:
            lines.append(f"  {code}")
        where = where_line(info)  # --tbench-profile: the operators that added the time
        if where:
            lines.append(f"  {where}")
    if run.run is not None and run.run.status == REGRESSED:
        lines.append(
            f"the whole run is slower by {run.run.describe()} ({run.run.pairs} pairs over "
            f"{run.run.items} items): REGRESSED"
        )
    return lines
