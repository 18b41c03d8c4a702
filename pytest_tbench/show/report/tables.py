"""The report's tables as plain data (title, headers, cells), rendered by markdown.py and html.py alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_tbench.core.metric_table import LATENCY, PEAK_MEMORY, Metric
from pytest_tbench.core.modes import Column, TableItem, columns_for, mode_names, throughput
from pytest_tbench.judge.runs import gpu_names
from pytest_tbench.show.report.frame import Row, Run
from pytest_tbench.show.report.metrics import group_by

GIB = 1024**3


class _VariantColumn(Column):
    def cell(self, item: TableItem) -> str:
        return str(item.field("variant") or "") or "defaults"


VARIANT = _VariantColumn("variant", "variant")


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    cells: list[list[str]]
    note: str = ""  # a line under the table: what its columns mean
    links: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> the cell's link target


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def ordered_modes(rows: list[Row]) -> list[str]:
    """The modes of ``rows`` in the mode table's order (registered modes included), then unknown ones."""
    present = dict.fromkeys(r.mode for r in rows)
    known = mode_names()
    return [m for m in known if m in present] + [m for m in present if m not in known]


def item_name(row: Row, runs: bool, variant: bool = True) -> str:
    run = f"[{row.run}] " if runs else ""
    new = f" x {row.new_tokens} new" if row.new_tokens else ""
    axes = f" {row.variant}" if variant and row.variant else ""
    where = f"{row.device} {row.dtype}{axes}"
    return f"{run}{row.model} batch {row.batch_size} x input {row.seq_len}{new} ({where})"


def mode_summary(mode: str, rows: list[Row], runs: bool) -> Table:
    """Fastest and slowest item, best throughput, lowest peak memory; n/a where no item has the metric."""
    speed = throughput(mode)
    picks: list[tuple[str, Metric, bool]] = [
        ("fastest item", LATENCY, False),
        ("slowest item", LATENCY, True),
        ("best throughput", speed, True),
        ("lowest peak memory", PEAK_MEMORY, False),
    ]
    cells = []
    for what, metric, highest in picks:
        having = [(value, row) for row in rows if (value := metric.value(row)) is not None]
        if not having:
            cells.append([what, "n/a", f"n/a {metric.unit}"])
            continue
        value, row = (max if highest else min)(having, key=lambda pair: pair[0])
        cells.append([what, item_name(row, runs), f"{metric.format(value)} {metric.unit}"])
    return Table(f"{mode}: summary of {len(rows)} items", ["", "item", "value"], cells)


def model_tables(mode: str, rows: list[Row], runs: bool) -> list[Table]:
    columns = columns_for(mode)
    if any(row.variant for row in rows):  # else the variants' rows would read as repeats of one item
        columns = (VARIANT, *columns)
    tables = []
    for (run, model), model_rows in group_by(rows, lambda r: (r.run, r.model)).items():
        ordered = sorted(
            model_rows, key=lambda r: (r.device, r.dtype, r.batch_size or 0, r.seq_len or 0, r.variant)
        )
        title = f"{mode}: {model}" + (f" [{run}]" if runs else "")
        tables.append(
            Table(title, [c.header for c in columns], [[c.cell(r) for c in columns] for r in ordered])
        )
    return tables


def _gpus(run: Run) -> str:
    return ", ".join(gpu_names(run.environment)) or "none"


def _ram(run: Run) -> str:
    ram = run.environment.get("ram_total_bytes")
    return f"{ram / GIB:.1f} GiB" if isinstance(ram, (int, float)) else "n/a"


def _settings(run: Run) -> str:
    settings = run.environment.get("settings") or {}
    parts = []
    for key, entry in settings.items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return "; ".join(parts) or "n/a"


ENVIRONMENT_ROWS: list[tuple[str, Callable[[Run], str]]] = [
    ("file", lambda run: str(run.path) if run.path else run.label),
    ("date (UTC)", lambda run: _text(run.data.get("datetime"))),
    ("commit", lambda run: run.commit or "n/a"),
    ("items measured", lambda run: str(len(run.rows))),
    ("items skipped or errored", lambda run: str(len(run.not_measured))),
    ("python", lambda run: _text(run.environment.get("python_version"))),
    ("torch", lambda run: _text(run.environment.get("torch_version"))),
    ("transformers", lambda run: _text(run.environment.get("transformers_version"))),
    ("CUDA", lambda run: _text(run.environment.get("cuda_version"))),
    ("CPU", lambda run: _text(run.environment.get("cpu"))),
    (
        "cores (logical / physical)",
        lambda run: (
            f"{_text(run.environment.get('cpu_count_logical'))} / "
            f"{_text(run.environment.get('cpu_count_physical'))}"
        ),
    ),
    ("torch threads", lambda run: _text(run.environment.get("torch_num_threads"))),
    ("RAM", _ram),
    ("GPUs", _gpus),
    ("settings", _settings),
]


def environment_table(runs: list[Run]) -> Table:
    return Table(
        "Environment",
        ["", *(run.label for run in runs)],
        [[name, *(get(run) for run in runs)] for name, get in ENVIRONMENT_ROWS],
    )


def not_measured_table(runs: list[Run]) -> Table | None:
    cells = [
        [run.label, str(e.get("fullname", "?")), str(e.get("outcome", "?"))]
        for run in runs
        for e in run.not_measured
    ]
    return Table("Items not measured", ["run", "item", "outcome"], cells) if cells else None
