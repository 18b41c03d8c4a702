"""The report's profiles section (--tbench-profile runs): per mode, each profiled item's operator breakdown as
stacked bars (its heaviest operators by self time per round, the rest as "other"), an A/B item's two sides
side by side, and a table that links each item's trace file (open it in Perfetto or chrome://tracing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from matplotlib import colormaps
from matplotlib.figure import Figure

from pytest_tbench.core.metric_table import AB_BASE, PROFILE
from pytest_tbench.show.report.frame import Run, slug
from pytest_tbench.show.report.plots import DPI, Plot
from pytest_tbench.show.report.tables import Table

SHOWN = 7  # operators drawn per bar; the rest of the round is "other"


@dataclass(frozen=True)
class Profiled:
    run: str
    mode: str
    item: str
    side: str  # "base" for an A/B item's base side, else ""
    profile: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.item} ({self.run}{', base side' if self.side else ''})"

    @property
    def activity(self) -> str:
        return "device" if self.profile.get("device") else "host"

    def operators(self) -> list[Mapping[str, Any]]:
        return list(self.profile.get(self.activity) or [])


def profiled_items(runs: Sequence[Run]) -> list[Profiled]:
    """Every profiled item of ``runs`` (an A/B item's base side beside it), in run and item order."""
    found: list[Profiled] = []
    for run in runs:
        for bench in run.data.get("benchmarks") or []:
            info = bench.get("extra_info") or {} if isinstance(bench, Mapping) else {}
            mode, item = str(info.get("mode", "")), str(bench.get("name", ""))
            sides = (("base", (info.get(AB_BASE) or {}).get(PROFILE)), ("", info.get(PROFILE)))
            found.extend(Profiled(run.label, mode, item, side, p) for side, p in sides if _profiled(p))
    return found


def _profiled(profile: Any) -> TypeGuard[Mapping[str, Any]]:
    """A profile that ran (one that failed has only its ``unavailable_reason``)."""
    return isinstance(profile, Mapping) and profile.get("host") is not None


def breakdown_plot(items: Sequence[Profiled], mode: str, path: Path) -> Plot | None:
    """One stacked bar per profiled item: its heaviest operators' self time per round, then "other" up to
    the round's timed wall time."""
    if not items:
        return None
    names = list(dict.fromkeys(op["name"] for p in items for op in p.operators()[:SHOWN]))
    colours = {name: colormaps["tab20"](k % 20) for k, name in enumerate(names)}
    fig = Figure(figsize=(11.0, 1.0 + 0.45 * len(items)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for row, profiled in enumerate(items):
        left = 0.0
        for op in profiled.operators()[:SHOWN]:
            name = op["name"]
            label = name if name not in ax.get_legend_handles_labels()[1] else None
            ax.barh(row, op["self_ms"], left=left, color=colours[name], label=label)
            left += float(op["self_ms"])
        other = max(0.0, float(profiled.profile.get("round_ms") or 0.0) - left)
        label = "other" if "other" not in ax.get_legend_handles_labels()[1] else None
        ax.barh(row, other, left=left, color="#cccccc", label=label)
    ax.set_yticks(range(len(items)), labels=[p.label for p in items], fontsize=8)
    ax.invert_yaxis()  # the first item on top
    ax.set_xlabel("self time per profiled round (ms)")
    title = f"{mode}: where each profiled item's round went (heaviest operators by self time)"
    fig.suptitle(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return Plot(path, "operator_breakdown", mode, title)


def profile_table(items: Sequence[Profiled], mode: str) -> Table:
    """Each profiled item: its round, its three heaviest operators and a link to its trace."""
    cells, links = [], {}
    for row, profiled in enumerate(items):
        heaviest = ", ".join(f"{op['name']} {op['self_ms']:.2f}" for op in profiled.operators()[:3])
        trace = str(profiled.profile.get("trace") or "")
        cells.append(
            [
                profiled.item,
                profiled.run + (" (base side)" if profiled.side else ""),
                f"{float(profiled.profile.get('round_ms') or 0.0):.2f}",
                f"{profiled.activity}: {heaviest}",
                Path(trace).name,
            ]
        )
        if trace:
            links[(row, 4)] = Path(trace).as_uri() if Path(trace).is_absolute() else trace
    headers = ["item", "run", "round (ms)", "heaviest operators (self ms per round)", "trace"]
    note = "rounds after the measured ones, under torch.profiler; open a trace in ui.perfetto.dev"
    return Table(f"profiled items: {mode}", headers, cells, note, links)


def profile_parts(runs: Sequence[Run], out_dir: Path) -> tuple[list[Table], list[Plot]]:
    """The profiles section's tables and plots for ``runs`` (before their A/B base sides become runs)."""
    items = profiled_items(runs)
    tables, plots = [], []
    for mode in dict.fromkeys(p.mode for p in items):
        chosen = [p for p in items if p.mode == mode]
        tables.append(profile_table(chosen, mode))
        plot = breakdown_plot(chosen, mode, out_dir / f"operators_{slug(mode)}.png")
        if plot is not None:
            plots.append(plot)
    return tables, plots
