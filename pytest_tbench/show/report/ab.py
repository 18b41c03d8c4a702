"""A/B runs in a report. An item measured under ``--tbench-ab`` carries its base side in
``extra_info.ab_base``; the report shows that side as a run of its own next to the current side, so the
tables, the environment and the comparison plot show both, and the paired verdicts get a table of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_benchmark.stats import Stats

from pytest_tbench.core.metric_table import AB, ROUNDS_S
from pytest_tbench.judge.rejudge import is_ab
from pytest_tbench.show.ab_summary import AB_HEADERS, AB_LEGEND, ab_rows
from pytest_tbench.show.report.frame import STATS_KEYS, Run, row_of
from pytest_tbench.show.report.tables import Table

# The base side's versions, when its interpreter differs (python:PATH), replace the run's in its column.
_SIDE_VERSIONS = ("python_version", "torch_version", "transformers_version")


def with_base_sides(runs: Sequence[Run]) -> list[Run]:
    """``runs`` with each run that holds A/B items preceded by its base side's run."""
    expanded: list[Run] = []
    for run in runs:
        base = base_run(run)
        if base is not None:
            expanded.append(base)
        expanded.append(run)
    return expanded


def base_run(run: Run) -> Run | None:
    """The base side of ``run``'s A/B items as a run labelled ``<label> base (<side>)``; None without any."""
    benches = [b for b in run.data.get("benchmarks") or [] if isinstance(b, Mapping) and is_ab(b)]
    if not benches:
        return None
    base_side = _base_side(benches[0])
    label = f"{run.label} base ({base_side.get('spec', '?')})"
    # Items not measured are the run's: listed once, under the current side.
    tbench = {k: v for k, v in (run.data.get("tbench") or {}).items() if k != "not_measured"}
    data = {**run.data, "machine_info": _base_machine_info(run.data, base_side), "tbench": tbench}
    return Run(label, run.path, data, [row_of(_base_bench(b), label) for b in benches])


def _base_side(bench: Mapping[str, Any]) -> Mapping[str, Any]:
    side = bench["extra_info"].get(AB, {}).get("sides", {}).get("base")
    return side if isinstance(side, Mapping) else {}


def _base_bench(bench: Mapping[str, Any]) -> dict[str, Any]:
    """The base side as a JSON entry of its own: pytest-benchmark's stats from its raw rounds."""
    info = dict(bench["extra_info"]["ab_base"])
    rounds = [float(r) for r in info.pop(ROUNDS_S, None) or []]
    return {**bench, "stats": stats_of(rounds), "extra_info": info}


def stats_of(rounds: list[float]) -> dict[str, float]:
    """pytest-benchmark's per-call statistics of ``rounds`` (seconds), computed by its own ``Stats``, so the
    base side's figures are defined exactly as the current side's."""
    if not rounds:
        return {}
    stats = Stats()
    for value in rounds:
        stats.update(value)
    return {key: float(getattr(stats, key)) for key in STATS_KEYS}


def _base_machine_info(data: Mapping[str, Any], side: Mapping[str, Any]) -> dict[str, Any]:
    info = dict(data.get("machine_info") or {})
    tbench = dict(info.get("tbench") or {})
    tbench |= {key: side[key] for key in _SIDE_VERSIONS if key in side}
    return {**info, "tbench": tbench}


def verdict_table(runs: Sequence[Run]) -> Table | None:
    """Every A/B item's paired verdicts, as the session's terminal table shows them; None without any.
    ``runs`` as loaded, before ``with_base_sides``."""
    cells = []
    for run in runs:
        items = [
            (str(b.get("name") or b.get("fullname")), b["extra_info"])
            for b in run.data.get("benchmarks") or []
            if isinstance(b, Mapping) and is_ab(b)
        ]
        prefix = [run.label] if len(runs) > 1 else []
        cells += [[*prefix, *row] for row in ab_rows(items)]
    if not cells:
        return None
    headers = (["run"] if len(runs) > 1 else []) + AB_HEADERS
    return Table("A/B: paired verdicts", headers, cells, AB_LEGEND)
