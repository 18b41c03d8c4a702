"""``index.html``: every chart of a history on one self-contained page (CSS and the report's sorting script
inline, plots as data: URIs), like asv's graphs: per model and mode a sortable table of its series (the
latest value, the change since the first run, the steps found), then each chart with its points in a
collapsed table per machine. Every text from the data is escaped."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from pytest_tbench.history.display import is_regression, number, percent
from pytest_tbench.history.series import Step
from pytest_tbench.show.history.charts import Chart, Line
from pytest_tbench.show.history.plots import HistoryPlot, slug
from pytest_tbench.show.report.html import _CSS as REPORT_CSS
from pytest_tbench.show.report.html import _JS as SORTABLE_JS

_CSS = (
    REPORT_CSS
    + """
.regression { color: #c62828; font-weight: bold; } .improvement { color: #2e7d32; font-weight: bold; }
details { margin: 0 0 0.5em 1em; } summary { cursor: pointer; font-size: 0.9em; }
section.chart { border-top: 1px solid #ddd; padding-top: 0.5em; }
nav ul { columns: 3; }
"""
)


def step_text(line: Line, step: Step) -> str:
    """ "+7.2% [+5.9%, +8.4%] from abc1234 (run 42), 2026-11-20"."""
    point = line.series.points[step.index]
    commit = f"{point.commit[:7]} " if point.commit else ""
    return (
        f"{percent(step.ratio)} [{percent(step.ratio_low)}, {percent(step.ratio_high)}] "
        f"from {commit}(run {point.run_id}), {point.date[:10]}"
    )


def _step_html(line: Line, step: Step) -> str:
    css = "regression" if is_regression(step, line.key.higher_is_better) else "improvement"
    return f'<span class="{css}">{escape(step_text(line, step))}</span>'


def _anchor(index: int, chart: Chart) -> str:
    return f"chart-{index}-{slug(chart.case_id)}-{slug(chart.metric)}"


def _summary_rows(chart: Chart, anchor: str) -> list[str]:
    rows = []
    for line in chart.lines:
        points = line.series.points
        first, latest = (points[0].value, points[-1].value) if points else (None, None)
        change = percent(latest / first) if first and latest is not None else "n/a"
        shown = "n/a" if latest is None else f"{number(chart.display.show(latest))} {chart.display.label}"
        steps = "<br>".join(_step_html(line, s) for s in line.steps) or "none"
        cells = [
            f'<td><a href="#{escape(anchor)}">{escape(chart.case_id)}</a></td>',
            f"<td>{escape(chart.metric)}</td>",
            f"<td>{escape(line.key.machine)}</td>",
            f'<td class="num">{len(points)}</td>',
            f'<td class="num">{escape(shown)}</td>',
            f'<td class="num">{escape(change)}</td>',
            f"<td>{steps}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _points_table(chart: Chart, line: Line) -> str:
    show, unit = chart.display.show, escape(chart.display.label)
    columns = ("run", "date", "commit", "branch", f"value ({unit})", f"q1 ({unit})", f"q3 ({unit})", "step")
    head = "".join(f"<th>{h}</th>" for h in columns)

    def shown(value: float | None) -> str:
        return "" if value is None else number(show(value))

    body = []
    for index, p in enumerate(line.series.points):
        step = line.step_at(index)
        cells = [
            f'<td class="num">{p.run_id}</td>',
            f"<td>{escape(p.date)}</td>",
            f"<td>{escape(p.commit[:12])}</td>",
            f"<td>{escape(p.branch)}</td>",
            *(f'<td class="num">{shown(v)}</td>' for v in (p.value, p.low, p.high)),
            f"<td>{_step_html(line, step) if step else ''}</td>",
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    summary = f"{line.key.machine}: {len(line.series.points)} points, {len(line.steps)} steps"
    return (
        f"<details><summary>{escape(summary)}</summary>"
        f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        "</details>"
    )


def _figure(plot: HistoryPlot | None) -> str:
    if plot is None:
        return "<p>no points to plot</p>"
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(plot.title)}</figcaption></figure>"
    )


def render_page(charts: Sequence[Chart], plots: Sequence[HistoryPlot | None], title: str) -> str:
    """The page for ``charts``, ``plots[i]`` the PNG of ``charts[i]`` (None where it has no points)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, chart in enumerate(charts):
        groups.setdefault((chart.model, chart.mode), []).append(index)
    lines = [line for chart in charts for line in chart.lines]
    steps = [(line, s) for line in lines for s in line.steps]
    regressions = sum(is_regression(s, line.key.higher_is_better) for line, s in steps)
    dates = sorted(p.date for chart in charts for p in chart.runs)
    span = f", runs from {dates[0][:10]} to {dates[-1][:10]}" if dates else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(lines)} series in {len(charts)} charts, {len(steps)} steps found "
        f"({regressions} regressions){escape(span)}.</p>",
    ]
    if not charts:
        parts.append("<p>No series matched.</p>")
    else:
        parts.append("<nav><ul>")
        parts += [
            f'<li><a href="#{escape(slug(f"{model} {mode}"))}">{escape(model)} {escape(mode)}</a> '
            f"({len(indices)} charts)</li>"
            for (model, mode), indices in groups.items()
        ]
        parts.append("</ul></nav>")
    header = "".join(
        f"<th>{h}</th>"
        for h in ("case", "metric", "machine", "points", "latest", "change from first", "steps found")
    )
    for (model, mode), indices in groups.items():
        parts.append(f'<h2 id="{escape(slug(f"{model} {mode}"))}">{escape(model)} {escape(mode)}</h2>')
        rows = [row for i in indices for row in _summary_rows(charts[i], _anchor(i, charts[i]))]
        parts.append(
            f'<table class="sortable"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )
        for i in indices:
            chart = charts[i]
            parts.append(f'<section class="chart" id="{escape(_anchor(i, chart))}">')
            parts.append(f"<h3>{escape(chart.title)}</h3>")
            parts.append(_figure(plots[i]))
            parts += [_points_table(chart, line) for line in chart.lines]
            parts.append("</section>")
    parts += [f"<script>{SORTABLE_JS}</script>", "</body></html>"]
    return "\n".join(parts)
