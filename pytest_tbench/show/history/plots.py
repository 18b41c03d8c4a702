"""A chart as a PNG: the metric over the runs, a line per machine, its q1-q3 band, and the steps found.

matplotlib's object API on the Agg canvas, as show/report/plots.py draws (no pyplot: no global figure state,
so that hundreds of charts leave nothing open behind them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pytest_tbench.core.metric_table import METRICS
from pytest_tbench.history.display import is_regression, percent
from pytest_tbench.show.history.charts import Chart, Line

DPI = 100
FIGSIZE = (9.0, 3.6)  # inches: two fit a laptop screen's height, so a page of many stays scannable
MAX_TICK_LABELS = 12  # more runs than this: every n-th run labelled, so that labels do not overlap
MAX_TITLE_MACHINES = 3  # more machines than this: the title names these, the legend all
STEP_LABEL_ROWS = 3
REGRESSION_COLOR = "#c62828"
IMPROVEMENT_COLOR = "#2e7d32"


@dataclass(frozen=True)
class HistoryPlot:
    path: Path
    case_id: str
    metric: str
    machines: tuple[str, ...]
    title: str


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def tick_label(chart: Chart, index: int) -> str:
    point = chart.runs[index]
    day = point.date[:10]
    return f"{point.commit[:7]}\n{day}" if point.commit else day


def tick_positions(count: int) -> list[int]:
    """Every run while they fit, else every n-th, always with the newest."""
    every = max(1, math.ceil(count / MAX_TICK_LABELS))
    ticks = list(range(0, count, every))
    if len(ticks) > 1 and count - 1 - ticks[-1] < every:
        ticks[-1] = count - 1  # the newest run matters most: it takes the place of a label too close to it
    elif ticks and ticks[-1] != count - 1:
        ticks.append(count - 1)
    return ticks


def _draw_line(ax: Axes, chart: Chart, line: Line, color: str) -> None:
    points = line.series.points
    show = chart.display.show
    xs = np.array([chart.x(p) for p in points], dtype=float)
    ys = [show(p.value) for p in points]
    ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color=color, label=line.key.machine)
    banded = [p.low is not None and p.high is not None for p in points]
    if any(banded):
        low = [show(p.low) if p.low is not None else show(p.value) for p in points]
        high = [show(p.high) if p.high is not None else show(p.value) for p in points]
        ax.fill_between(xs, low, high, where=banded, color=color, alpha=0.2, linewidth=0)


def _mark_steps(ax: Axes, chart: Chart) -> None:
    marks = sorted(
        (
            (chart.x(line.series.points[step.index]), line, step)
            for line in chart.lines
            for step in line.steps
        ),
        key=lambda mark: mark[0],
    )
    for number, (x, line, step) in enumerate(marks):
        color = REGRESSION_COLOR if is_regression(step, line.key.higher_is_better) else IMPROVEMENT_COLOR
        ax.axvline(x - 0.5, color=color, linestyle="--", linewidth=1.2)
        # Labels of steps in x order step down in height, so that nearby ones (the same commit on two
        # machines) do not print over each other.
        label = percent(step.ratio) + (f" {line.key.machine}" if len(chart.lines) > 1 else "")
        ax.annotate(
            label,
            xy=(x - 0.5, 0.97 - 0.08 * (number % STEP_LABEL_ROWS)),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            color=color,
            fontsize=8,
            fontweight="bold",
            va="top",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )
    if marks:  # room above the data for the labels
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.08 * STEP_LABEL_ROWS * (high - low))


def draw_chart(chart: Chart, path: Path) -> HistoryPlot:
    """The chart as a PNG at ``path``; a step's line stands between the last run of the old level and the
    first of the new."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    # Fixed margins, not a layout engine: it draws each figure twice, and a history draws hundreds.
    fig.subplots_adjust(left=0.085, right=0.96, top=0.87, bottom=0.2)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(chart.lines))]
    for line, color in zip(chart.lines, colors, strict=True):
        _draw_line(ax, chart, line, color)
    _mark_steps(ax, chart)
    ticks = tick_positions(len(chart.runs))
    ax.set_xticks(ticks, labels=[tick_label(chart, i) for i in ticks], fontsize=7)
    ax.set_xlim(-0.5, max(len(chart.runs) - 0.5, 0.5))
    ax.set_xlabel("runs in date order (commit, date)", fontsize=8)
    known = METRICS.get(chart.metric)
    ax.set_ylabel(f"{known.title if known else chart.metric} ({chart.display.label})", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, alpha=0.3)
    if len(chart.lines) > 1:
        ax.legend(fontsize=7, loc="best")
    machines = ", ".join(chart.machines[:MAX_TITLE_MACHINES])
    if len(chart.machines) > MAX_TITLE_MACHINES:
        machines += f" and {len(chart.machines) - MAX_TITLE_MACHINES} more (legend)"
    ax.set_title(f"{chart.case_id}: {chart.metric} ({chart.display.label})\non {machines}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return HistoryPlot(path, chart.case_id, chart.metric, tuple(chart.machines), chart.title)
