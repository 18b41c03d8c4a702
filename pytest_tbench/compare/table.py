"""The gate's summary: item, metric, baseline, now, change, verdict; as text or as Markdown."""

from __future__ import annotations

from tabulate import tabulate

from .judge import CANNOT_TELL, Verdict, format_value
from .runs import Comparison


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
    return "\n".join(lines)
