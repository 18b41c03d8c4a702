"""PNG plots of a report, drawn with matplotlib's object API on the Agg canvas (no pyplot: no global
backend or figure state, so a report written inside a pytest session cannot disturb anything else).

Batch sizes and input lengths double in every preset, so their axes are log2 (heatmap axes are one cell
per measured size, which is the same thing for doubling sizes). Missing values are blank "n/a" cells or
gaps in a line, never zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

from pytest_tbench.core.metric_table import DECODE, LATENCY, PEAK_MEMORY, PREFILL, Metric
from pytest_tbench.core.modes import extra_plots, generates, throughput
from pytest_tbench.show.report.frame import Row, slug
from pytest_tbench.show.report.metrics import group_by, points
from pytest_tbench.show.report.variants import defaults_text, group_name, variant_groups

DPI = 100
# A colour or y scale turns logarithmic when the largest value is this many times the smallest.
LOG_SCALE_RATIO = 10.0


@dataclass(frozen=True)
class Plot:
    path: Path
    kind: str
    mode: str
    title: str
    grid: tuple[int, int] | None = None  # heatmap cells: (batch sizes, input lengths)


def heatmap_figsize(n_batches: int, n_lengths: int) -> tuple[float, float]:
    return (max(5.0, 1.0 * n_lengths + 3.0), max(3.5, 0.55 * n_batches + 2.2))


class Namer:
    """File names and titles that name only the coordinates that vary across the report, so a one-run,
    one-device report gets ``latency_heatmap_gpt2_forward.png``."""

    def __init__(self, rows: list[Row]) -> None:
        self.runs = len({r.run for r in rows}) > 1
        self.heads = len({(r.model, r.mode, r.head) for r in rows}) > len({(r.model, r.mode) for r in rows})
        self.targets = len({(r.device, r.dtype) for r in rows}) > 1
        self.new_tokens = len({r.new_tokens for r in rows if generates(r.mode)}) > 1
        # Each variant's grid is plotted apart: without it in the name, one variant's file would overwrite
        # another's.
        self.variants = len({r.variant for r in rows}) > 1

    def parts(self, row: Row) -> list[str]:
        parts = [row.model, row.mode]
        if self.heads:
            parts.append(row.head)
        if self.targets:
            parts += [row.device, row.dtype]
        if self.new_tokens and row.new_tokens:
            parts.append(f"n{row.new_tokens}")
        if self.variants:
            parts.append(row.variant or "defaults")
        if self.runs:
            parts.append(row.run)
        return parts

    def file(self, kind: str, row: Row) -> str:
        return "_".join([kind, *(slug(p) for p in self.parts(row))]) + ".png"

    @staticmethod
    def title(what: str, row: Row, runs: bool) -> str:
        new = f", {row.new_tokens} new tokens" if row.new_tokens else ""
        run = f" [{row.run}]" if runs else ""
        variant = f" {row.variant}" if row.variant else ""
        return f"{row.model} {row.mode}: {what}\n{row.device} {row.dtype}{new}{variant}{run}"


def _axis_sizes(rows: list[Row]) -> tuple[list[int], list[int]]:
    batches = sorted({r.batch_size for r in rows if r.batch_size})
    lengths = sorted({r.seq_len for r in rows if r.seq_len})
    return batches, lengths


def _norm(values: np.ndarray) -> Normalize:
    finite = values[np.isfinite(values)]
    low, high = float(finite.min()), float(finite.max())
    if low > 0 and high / low >= LOG_SCALE_RATIO:
        return LogNorm(low, high)
    return Normalize(low, high if high > low else low + 1)


def _log2_axis(ax: Axes, which: str, ticks: Sequence[int], label: str) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=2)
    axis.set_major_locator(FixedLocator(list(ticks)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_locator(NullLocator())
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(label)


def _plain(value: float, _: object = None) -> str:
    return f"{value:,.6g}"


def _plain_2_5(value: float, _: object = None) -> str:
    leading = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
    return _plain(value) if leading in (2, 5) else ""


def _plain_log(axis: Axis) -> None:
    """Plain numbers on a log axis ("600" reads faster than "6 x 10^2"); of the minor ticks only 2s and 5s,
    so that labels do not pile up."""
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(FuncFormatter(_plain_2_5))


def _maybe_log_y(ax: Axes, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= LOG_SCALE_RATIO:
        ax.set_yscale("log")
        _plain_log(ax.yaxis)


def _short(value: float) -> str:
    """A cell annotation: three significant figures or so, so that numbers fit their cells."""
    size = abs(value)
    return f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}"


def heatmap(rows: list[Row], metric: Metric, kind: str, title: str, path: Path, cmap: str) -> Plot | None:
    """Batch size x input length, one cell per item, annotated; None when the grid has one cell or the
    metric is missing everywhere."""
    batches, lengths = _axis_sizes(rows)
    if len(batches) < 2 and len(lengths) < 2:
        return None
    grid = np.full((len(batches), len(lengths)), np.nan)
    for row in rows:
        value = metric.value(row)
        if value is not None and row.batch_size in batches and row.seq_len in lengths:
            grid[batches.index(row.batch_size), lengths.index(row.seq_len)] = value
    if not np.isfinite(grid).any():
        return None
    fig = Figure(figsize=heatmap_figsize(len(batches), len(lengths)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    norm = _norm(grid)
    colors = colormaps[cmap].with_extremes(bad="#f0f0f0")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colors, norm=norm, aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            red, green, blue, _ = image.cmap(norm(value))
            color = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            ax.text(j, i, _short(float(value)), ha="center", va="center", fontsize=9, color=color)
        else:
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="#808080")
    ax.set_xticks(range(len(lengths)), labels=[str(n) for n in lengths])
    ax.set_yticks(range(len(batches)), labels=[str(n) for n in batches])
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("batch size")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, label=metric.label)
    if isinstance(norm, LogNorm):
        _plain_log(bar.ax.yaxis)
    fig.savefig(path)
    return Plot(path, kind, rows[0].mode, title.replace("\n", ", "), (len(batches), len(lengths)))


def scaling(rows: list[Row], along: str, title: str, path: Path, kind: str) -> Plot | None:
    """Latency and throughput against batch size (one line per input length) or against input length
    (one line per batch size); None with fewer than two sizes on the axis."""
    batches, lengths = _axis_sizes(rows)
    by_batch = along == "batch"
    sizes, others = (batches, lengths) if by_batch else (lengths, batches)
    if len(sizes) < 2:
        return None
    metrics = (LATENCY, throughput(rows[0].mode))
    fig = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, metric in zip(axes, metrics, strict=True):
        values: list[float] = []
        for other in others:
            line = [r for r in rows if (r.seq_len if by_batch else r.batch_size) == other]
            series = points(line, (lambda r: r.batch_size) if by_batch else (lambda r: r.seq_len), metric)
            if not series:
                continue
            drawn = True
            xs, ys = zip(*series, strict=True)
            values += ys
            ax.plot(xs, ys, marker="o", label=f"input {other}" if by_batch else f"batch {other}")
        _log2_axis(ax, "x", sizes, "batch size" if by_batch else "input length (tokens)")
        _maybe_log_y(ax, values)
        ax.set_ylabel(metric.label)
        ax.set_title(metric.title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if values:
            ax.legend(fontsize=8)
    if not drawn:
        return None
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    return Plot(path, kind, rows[0].mode, title.replace("\n", ", "))


def prefill_decode(rows: list[Row], title: str, path: Path) -> Plot | None:
    """Stacked prefill (TTFT) and decode time per generate item."""
    items = sorted(
        (r for r in rows if PREFILL.value(r) is not None and DECODE.value(r) is not None),
        key=lambda r: (r.batch_size or 0, r.seq_len or 0),
    )
    if not items:
        return None
    prefill = np.array([PREFILL.value(r) for r in items], dtype=float)
    decode = np.array([DECODE.value(r) for r in items], dtype=float)
    fig = Figure(figsize=(max(6.0, 0.55 * len(items) + 2.5), 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(items))
    ax.bar(x, prefill, label="prefill (TTFT)", color="#4c72b0")
    ax.bar(x, decode, bottom=prefill, label="decode (remaining tokens)", color="#dd8452")
    for i, (p, d) in enumerate(zip(prefill, decode, strict=True)):
        if p + d > 0:
            ax.text(i, p + d, f"{p / (p + d):.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels=[f"b{r.batch_size}\ns{r.seq_len}" for r in items], fontsize=8)
    ax.set_xlabel("item (batch size, input length in tokens); % = prefill share")
    ax.set_ylabel("time per request (ms)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.margins(y=0.1)
    fig.savefig(path)
    return Plot(path, "prefill_decode", rows[0].mode, title.replace("\n", ", "))


def comparison(rows: list[Row], mode: str, path: Path) -> Plot | None:
    """Median latency of the same items side by side, one bar per run and model; None unless two series
    share an item."""
    runs = len({r.run for r in rows}) > 1
    models = len({r.model for r in rows}) > 1

    def series_of(row: Row) -> str:
        return ": ".join(p for p, keep in ((row.run, runs), (row.model, models)) if keep)

    table: dict[tuple[object, ...], dict[str, float]] = {}
    labels: dict[tuple[object, ...], str] = {}
    for row in rows:
        value = LATENCY.value(row)
        if value is not None:
            table.setdefault(row.item, {})[series_of(row)] = value
            labels[row.item] = row.label + (f"\n{row.device}" if len({r.device for r in rows}) > 1 else "")
    shared = sorted(
        (item for item, by in table.items() if len(by) > 1), key=lambda i: (i[2] or 0, i[3] or 0, labels[i])
    )
    in_shared = {name for item in shared for name in table[item]}
    names = [name for name in dict.fromkeys(series_of(r) for r in rows) if name in in_shared]  # runs as given
    if not shared or len(names) < 2:
        return None
    width = 0.8 / len(names)
    fig = Figure(figsize=(min(24.0, max(6.0, 0.35 * len(shared) * len(names) + 3)), 4.5), dpi=DPI)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    x = np.arange(len(shared))
    values: list[float] = []
    for k, name in enumerate(names):
        heights = [table[item].get(name, np.nan) for item in shared]
        values += [h for h in heights if np.isfinite(h)]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, heights, width, label=name)
    ax.set_xticks(x, labels=[labels[item] for item in shared], fontsize=8)
    ax.set_xlabel("item (batch size, input length in tokens)")
    ax.set_ylabel(LATENCY.label)
    _maybe_log_y(ax, values)
    what = " and ".join(w for w, keep in (("runs", runs), ("models", models)) if keep)
    title = f"{mode}: median latency of the same items across {what}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(path)
    return Plot(path, "comparison", mode, title)


def variant_speedups(rows: list[Row], mode: str, path: Path) -> Plot | None:
    """Each variant's speedup over its item at every default, bars grouped by item; items without one at the
    defaults are left out (no stand-in baseline). None when no item has a baseline and another variant."""
    groups = [
        [entry for entry in group if entry.row.variant and entry.speedup is not None]
        for group in variant_groups(rows)
        if group[0].baseline is not None
    ]
    groups = [group for group in groups if group]
    if not groups:
        return None
    names = list(dict.fromkeys(entry.row.variant for group in groups for entry in group))
    colours = {name: colormaps["tab10"](k % 10) for k, name in enumerate(names)}
    several_runs = len({r.run for r in rows}) > 1
    labels = [group_name(group[0].row, several_runs).replace(" (", "\n(") for group in groups]
    # Each item's bars side by side, only the variants it has; one colour per variant across items.
    width = 0.8 / max(len(group) for group in groups)
    slots = sum(len(group) for group in groups)
    fig = Figure(figsize=(min(24.0, max(8.0, 0.5 * slots + 5)), 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    values: list[float] = []
    for i, group in enumerate(groups):
        for k, entry in enumerate(group):
            speedup = entry.speedup or 0.0
            values.append(speedup)
            name = entry.row.variant
            label = name if name not in ax.get_legend_handles_labels()[1] else None
            at = i + (k - (len(group) - 1) / 2) * width
            bars = ax.bar(at, speedup, width, color=colours[name], label=label)
            ax.bar_label(bars, labels=[f"{speedup:.2f}"], fontsize=7)
    x = np.arange(len(groups))
    ax.axhline(1.0, color="#444444", linewidth=1, linestyle="--", label=f"defaults ({defaults_text()})")
    ax.set_xticks(x, labels=labels, fontsize=8)
    ax.set_xlabel("item")
    ax.set_ylabel("speedup vs defaults (x; above 1 is faster)")
    _maybe_log_y(ax, [*values, 1.0])
    title = f"{mode}: each variant's median latency speedup over the same item at every default"
    fig.suptitle(title, fontsize=10)  # over the legend too: the axes alone may be narrower than the title
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.1)
    fig.savefig(path)
    return Plot(path, "variant_speedup", mode, title)


def render_plots(rows: list[Row], out_dir: Path) -> list[Plot]:
    """Every plot the rows support, into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    namer = Namer(rows)
    plots: list[Plot | None] = []
    for group_rows in group_by(rows, lambda r: r.group).values():
        first = group_rows[0]

        def title(what: str, row: Row = first) -> str:
            return Namer.title(what, row, namer.runs)

        def path(kind: str, row: Row = first) -> Path:
            return out_dir / namer.file(kind, row)

        heatmaps = (
            (LATENCY, "latency_heatmap", "viridis"),
            (throughput(first.mode), "throughput_heatmap", "magma"),
            (PEAK_MEMORY, "memory_heatmap", "cividis"),
        )
        for metric, kind, cmap in heatmaps:
            plots.append(heatmap(group_rows, metric, kind, title(metric.label), path(kind), cmap))
        for along, what, kind in (
            ("batch", "scaling with batch size", "batch_scaling"),
            ("length", "scaling with input length", "length_scaling"),
        ):
            plots.append(scaling(group_rows, along, title(what), path(kind), kind))
        if "prefill_decode" in extra_plots(first.mode):
            plots.append(prefill_decode(group_rows, title("prefill vs decode time"), path("prefill_decode")))
    if len({r.run for r in rows}) > 1 or len({r.model for r in rows}) > 1:
        for mode, mode_rows in group_by(rows, lambda r: r.mode).items():
            plots.append(comparison(mode_rows, mode, out_dir / f"comparison_{slug(mode)}.png"))
    if len({r.variant for r in rows}) > 1:
        for mode, mode_rows in group_by(rows, lambda r: r.mode).items():
            plots.append(variant_speedups(mode_rows, mode, out_dir / f"variant_speedup_{slug(mode)}.png"))
    return [p for p in plots if p is not None]
