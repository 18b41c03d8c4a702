"""A history's files: ``history.csv`` (every point, long form), a PNG per item case and metric (a line per
machine), and ``index.html`` (all of them on one self-contained page).

    from pytest_tbench.show.history.render import write_history

    files = write_history(store.series(Filters(model="gpt2")), Path("history/"), steps=found_steps)
    print(files.html)  # history/index.html

``series`` come from the store (``Store.series``), ``steps`` (by series key, indices into that series'
points) from the change-point detector; without ``steps`` nothing is marked.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_tbench.history.display import is_regression
from pytest_tbench.history.series import Series, SeriesKey, Step
from pytest_tbench.show.history.charts import Chart, Line, build_charts
from pytest_tbench.show.history.page import render_page
from pytest_tbench.show.history.plots import HistoryPlot, draw_chart, slug

CSV_COLUMNS = (
    "machine",
    "model",
    "mode",
    "case_id",
    "metric",
    "unit",
    "run_id",
    "date",
    "commit",
    "branch",
    "value",
    "low",
    "high",
    # Empty unless a step starts at this point: the new level over the old one, its interval, and whether it
    # is worse by the metric's direction.
    "step_ratio",
    "step_ratio_low",
    "step_ratio_high",
    "step_p_value",
    "step_regression",
)


@dataclass(frozen=True)
class HistoryFiles:
    """What ``write_history`` wrote."""

    out: Path
    csv: Path
    html: Path
    plots: tuple[HistoryPlot, ...]
    series: int  # how many series the files hold
    steps: int  # how many steps they mark

    def paths(self) -> list[Path]:
        return [self.csv, *(p.path for p in self.plots), self.html]


def _optional(value: float | None) -> float | str:
    return "" if value is None else value


def csv_rows(line: Line) -> Iterator[list[object]]:
    """A line's points as ``CSV_COLUMNS`` rows, values as stored (the ``unit`` column says in what)."""
    k = line.key
    identity = [k.machine, k.model, k.mode, k.case_id, k.metric, k.unit]
    for index, p in enumerate(line.series.points):
        step = line.step_at(index)
        step_cells: list[object] = ["", "", "", "", ""]
        if step is not None:
            worse = is_regression(step, k.higher_is_better)
            step_cells = [step.ratio, step.ratio_low, step.ratio_high, step.p_value, worse]
        point = [p.run_id, p.date, p.commit, p.branch, p.value, _optional(p.low), _optional(p.high)]
        yield [*identity, *point, *step_cells]


def write_csv(charts: Sequence[Chart], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for chart in charts:
            for line in chart.lines:
                writer.writerows(csv_rows(line))


def _plot_path(out: Path, chart: Chart, taken: set[Path]) -> Path:
    stem = f"{slug(chart.case_id)}__{slug(chart.metric)}"
    path, n = out / "plots" / f"{stem}.png", 1
    while path in taken:  # case ids that differ only in characters a file name cannot hold
        n += 1
        path = out / "plots" / f"{stem}__{n}.png"
    taken.add(path)
    return path


def write_history(
    series: Sequence[Series],
    out: Path,
    steps: Mapping[SeriesKey, Sequence[Step]] | None = None,
    title: str = "tbench history",
) -> HistoryFiles:
    """Write ``history.csv``, ``plots/*.png`` and ``index.html`` for ``series`` into ``out`` (created if
    needed), marking ``steps``; what was written."""
    charts = build_charts(series, steps or {})
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "history.csv"
    write_csv(charts, csv_path)
    taken: set[Path] = set()
    plots = [draw_chart(chart, _plot_path(out, chart, taken)) if chart.runs else None for chart in charts]
    html = out / "index.html"
    html.write_text(render_page(charts, plots, title), encoding="utf-8")
    lines = [line for chart in charts for line in chart.lines]
    drawn = tuple(p for p in plots if p is not None)
    return HistoryFiles(out, csv_path, html, drawn, len(lines), sum(len(line.steps) for line in lines))
