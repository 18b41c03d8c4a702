"""The gate's summary: item, metric, baseline, now, change, verdict; as text or as Markdown."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from tabulate import tabulate

from pytest_tbench.judge.judge import (
    CANNOT_TELL,
    IMPROVED,
    MIN_RUN_ITEMS,
    REGRESSED,
    TOO_FEW,
    UNCHANGED,
    Verdict,
    counted,
    format_value,
)
from pytest_tbench.judge.runs import Comparison


def _row(v: Verdict) -> list[str]:
    return [
        v.item.split("::")[-1],
        str(v.criterion),
        format_value(v.baseline, v.unit),
        format_value(v.now, v.unit),
        f"{v.change:+.1%}",
        v.significance,
        v.status,
    ]


def render(comparison: Comparison, markdown: bool = False) -> str:
    headers = ["item", "metric", "baseline", "now", "change", "p", "verdict"]
    table = tabulate(
        [_row(v) for v in comparison.verdicts],
        headers,
        tablefmt="github" if markdown else "simple",
        disable_numparse=True,
    )
    lines = [table]
    bullet = "- " if markdown else "  "
    for title, names in (
        ("New items (no baseline)", comparison.new),
        ("Missing from this run", comparison.missing),
        (
            "Not measured in the baseline",
            [f"{name} ({outcome})" for name, outcome in comparison.not_measured.items()],
        ),
        (
            "Cannot tell: past the threshold, but not past the drift between sessions",
            [
                f"{v.item.split('::')[-1]} {v.criterion.metric}: {v.note}"
                for v in comparison.verdicts
                if v.note and v.status == CANNOT_TELL
            ],
        ),
        (
            "Measured again after a timing regression (what the earlier judgements found; the table "
            "judges every measurement pooled)",
            [f"{name}: {earlier}" for name, earlier in comparison.remeasured.items()],
        ),
    ):
        if names:
            lines.append(f"\n{title}:")
            lines.extend(f"{bullet}{name}" for name in names)
    regressions = comparison.regressions
    checks = len(comparison.verdicts)
    items = len({v.item for v in regressions})
    verdict = (
        f"{items} regressed item(s), {len(regressions)} of {checks} checks failed"
        if regressions
        else f"no regressions in {checks} checks"
    )
    on_rounds = sum(1 for v in comparison.verdicts if v.tested_on.endswith(" rounds"))
    if on_rounds:
        lines.append(
            f"\nNote: {on_rounds} timing check(s) were tested on rounds of single processes, which cannot "
            "show how much timings move between processes; measure baseline and current with "
            "--tbench-processes 5 (or more) to test per-process medians."
        )
    strong = "**" if markdown else ""
    lines.append(f"\n{strong}{verdict}{strong}")
    lines.append(run_line(comparison))
    return "\n".join(lines)


SEVERITY = (REGRESSED, CANNOT_TELL, TOO_FEW, UNCHANGED, IMPROVED)


def run_line(comparison: Comparison) -> str:
    """The run in one line: items by their most severe verdict, and the whole run's change of time (the mean
    of the items' log ratios, with a 99% Student t interval over items: sessions drift as a whole, so this
    is the figure to hold against the drift allowance)."""
    by_item: dict[str, list[str]] = {}
    logs = []
    for v in comparison.verdicts:
        by_item.setdefault(v.item, []).append(v.status)
        if v.criterion.metric == "time" and v.baseline > 0 and v.now > 0:
            logs.append(math.log(v.now / v.baseline))
    rank = {status: index for index, status in enumerate(SEVERITY)}
    outcomes = Counter(min(found, key=lambda s: rank.get(s, len(SEVERITY))) for found in by_item.values())
    counts = ", ".join(
        f"{outcomes[s]} {s}" for s in sorted(outcomes, key=lambda s: rank.get(s, len(SEVERITY)))
    )
    text = f"tbench gate: {counted(len(by_item), 'item')}: {counts or 'none judged'}"
    if 0 < len(logs) < MIN_RUN_ITEMS:
        text += f"; no run-level change under {MIN_RUN_ITEMS} items"
    elif logs:
        from scipy.stats import t  # late: scipy costs a second of `tbench compare --help`

        center = statistics.fmean(logs)
        half = float(t.ppf(0.995, len(logs) - 1)) * statistics.stdev(logs) / math.sqrt(len(logs))
        low, high = math.expm1(center - half), math.expm1(center + half)
        text += f"; run {math.expm1(center):+.1%} [{low:+.1%}, {high:+.1%}]"
    return text
