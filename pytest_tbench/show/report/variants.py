"""Variants side by side: the items of a run that differ only in their variant axes (core/axes.py), with each
variant's speedup over the group's item at every default and what compiling costs and saves.

A *group* is everything that identifies an item but its variant: run, mode, model, head, batch, input length,
new tokens, device and dtype. Its *baseline* is its item at every axis' default (``variant == ""``); where
the sweep left it out, the group has no baseline and no speedups: no other variant is promoted to stand in.
A compiled variant's *compile base* is the group's item with every other axis alike and compile off: the
same model, attention and weights, run eagerly.

Torch-free: the report reads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_tbench.core.axes import AXES, COMPILE_OFF, Axis
from pytest_tbench.core.metric_table import (
    ACHIEVED,
    COMPILE_TIME_S,
    LATENCY,
    MFU_METRIC,
    PARAMETERS,
    PEAK_MEMORY,
    Metric,
)
from pytest_tbench.core.modes import throughput
from pytest_tbench.show.report.frame import ITEM_COORDINATES, Row, sort_key
from pytest_tbench.show.report.metrics import group_by
from pytest_tbench.show.report.tables import Table, item_name


def _axis(key: str) -> Axis:
    return next(axis for axis in AXES if axis.key == key)


ATTN, QUANT, COMPILE = _axis("attn_implementation"), _axis("quantization"), _axis("compile")
COMPILE_TIME = Metric(COMPILE_TIME_S, "compile time", "s", 1, 1, "lower")
# Digits of a payback shown in tables and sentences (the CSV keeps the exact quotient): the medians it is
# computed from are not known to more than about 1 part in 1000.
PAYBACK_DIGITS = 3
NEVER = "never"


def axis_values(row: Row) -> dict[str, str]:
    """Every axis' value of ``row`` (its defaults included), read back from its variant label."""
    by_tag = {axis.tag: axis for axis in AXES}
    values = {axis.key: axis.default for axis in AXES}
    for part in row.variant.split():
        tag, _, value = part.partition(":")
        if tag in by_tag:
            values[by_tag[tag].key] = value
    return values


def group_of(row: Row) -> tuple[object, ...]:
    """Everything that identifies ``row`` but its variant."""
    return (
        row.run,
        row.mode,
        row.model,
        row.head,
        row.batch_size,
        row.seq_len,
        row.new_tokens,
        row.device,
        row.dtype,
    )


@dataclass(frozen=True)
class VariantRow:
    """One variant of a group measured under several, with what it is compared against."""

    row: Row
    values: dict[str, str]  # axis key -> value, defaults included
    baseline: Row | None  # the group's item at every default; None where the sweep left it out
    # Per axis at a non-default value: the group's item with that axis at its default and every other alike
    # (where measured): what that one axis changes.
    bases: dict[str, Row]

    @property
    def compile_base(self) -> Row | None:
        """The same item uncompiled: the base of a compiled variant's speedup and payback."""
        return self.bases.get(COMPILE.key)

    @property
    def median_s(self) -> float | None:
        return _positive(self.row.metric(LATENCY.key))

    @property
    def speedup(self) -> float | None:
        """Baseline median over this median: above 1 is faster than the defaults."""
        return speedup_of(self.baseline, self.row)

    @property
    def compiled(self) -> bool:
        return self.values[COMPILE.key] != COMPILE_OFF

    @property
    def compile_speedup(self) -> float | None:
        """Uncompiled median over compiled median (compiled variants with a compile base only)."""
        return speedup_of(self.compile_base, self.row)

    @property
    def payback_calls(self) -> float | None:
        """compile_time_s / (uncompiled median - compiled median): the calls whose saved time adds up to the
        compile time; ``inf`` where compiling saves nothing; None where there is nothing to compare."""
        if self.compile_base is None:
            return None
        compile_time = self.row.metric(COMPILE_TIME_S)
        base, own = _positive(self.compile_base.metric(LATENCY.key)), self.median_s
        if compile_time is None or base is None or own is None:
            return None
        saved = base - own
        return compile_time / saved if saved > 0 else math.inf


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def speedup_of(base: Row | None, row: Row) -> float | None:
    """``base``'s median latency over ``row``'s: above 1, ``row`` is faster; None where either is missing."""
    if base is None:
        return None
    before, after = _positive(base.metric(LATENCY.key)), _positive(row.metric(LATENCY.key))
    return before / after if before is not None and after is not None else None


def _order(values: dict[str, str]) -> tuple[object, ...]:
    """Defaults first along each axis, then the values in name order."""
    return tuple((values[a.key] != a.default, values[a.key]) for a in AXES)


def variant_groups(rows: Sequence[Row]) -> list[list[VariantRow]]:
    """The groups measured under more than one variant, in report order, each with its variants (defaults
    first). A variant measured twice in a group (the same item twice in one run) keeps the first."""
    found = []
    for group_rows in group_by(sorted(rows, key=sort_key), group_of).values():
        by_variant = {row.variant: row for row in reversed(group_rows)}
        if len(by_variant) < 2:
            continue
        baseline = by_variant.get("")
        valued = {variant: axis_values(row) for variant, row in by_variant.items()}
        by_values = {tuple(sorted(values.items())): by_variant[v] for v, values in valued.items()}
        entries = []
        for variant, values in sorted(valued.items(), key=lambda pair: _order(pair[1])):
            bases = {}
            for axis in AXES:
                if values[axis.key] != axis.default:
                    base = by_values.get(tuple(sorted({**values, axis.key: axis.default}.items())))
                    if base is not None:
                        bases[axis.key] = base
            entries.append(VariantRow(by_variant[variant], values, baseline, bases))
        found.append(entries)
    return found


def defaults_text() -> str:
    return ", ".join(f"{axis.tag} {axis.default}" for axis in AXES)


def group_name(row: Row, runs: bool) -> str:
    return item_name(row, runs, variant=False)


def format_payback(calls: float | None) -> str:
    """``~3,650`` (PAYBACK_DIGITS significant digits of the calls needed, rounded up), ``never``, or n/a."""
    if calls is None:
        return "n/a"
    if math.isinf(calls):
        return NEVER
    needed = math.ceil(calls)
    digits = len(str(needed))
    shown = round(needed, min(0, PAYBACK_DIGITS - digits))
    return f"{'~' if shown != needed else ''}{shown:,}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _varying_axes(entries: list[VariantRow]) -> list[Axis]:
    return [axis for axis in AXES if len({e.values[axis.key] for e in entries}) > 1]


def variant_table(mode: str, groups: list[list[VariantRow]], runs: bool) -> Table:
    """One row per variant of every group of ``mode`` measured under several; columns for TFLOP/s, MFU,
    compile time and parameter bytes only where some variant has them."""
    entries = [entry for group in groups for entry in group]
    axes = _varying_axes(entries)
    speed = throughput(mode)
    optional = [
        metric
        for metric in (ACHIEVED, MFU_METRIC, PARAMETERS, COMPILE_TIME)
        if any(metric.value(e.row) is not None for e in entries)
    ]
    compiled = any(e.compiled for e in entries)
    headers = [
        "item",
        *(axis.tag for axis in axes),
        LATENCY.label,
        "speedup vs defaults (x)",
        speed.label,
        PEAK_MEMORY.label,
        *(metric.label for metric in optional),
        *(["speedup vs uncompiled (x)", "compile pays back after (calls)"] if compiled else []),
    ]
    cells = []
    for entry in entries:
        row = entry.row
        cell = [
            group_name(row, runs),
            *(entry.values[axis.key] for axis in axes),
            LATENCY.format(LATENCY.value(row)),
            _x(entry.speedup),
            speed.format(speed.value(row)),
            PEAK_MEMORY.format(PEAK_MEMORY.value(row)),
            # "-": compile time does not apply to an uncompiled variant (n/a would say it went unrecorded).
            *(
                "-" if metric is COMPILE_TIME and not entry.compiled else metric.format(metric.value(row))
                for metric in optional
            ),
        ]
        if compiled and entry.compiled:
            cell += [_x(entry.compile_speedup), format_payback(entry.payback_calls)]
        elif compiled:
            cell += ["-", "-"]
        cells.append(cell)
    return Table(f"{mode}: variants", headers, cells, _note(groups, runs, compiled))


def _note(groups: list[list[VariantRow]], runs: bool, compiled: bool) -> str:
    note = (
        f"speedup vs defaults: the median latency of the same item at every default ({defaults_text()}) "
        "over this variant's; above 1 is faster."
    )
    if compiled:
        note += (
            " speedup vs uncompiled: the median of the same item with every other axis alike and compile "
            "off over the compiled one's. Pays back after: compile_time_s / (that uncompiled median - the "
            "compiled median), the calls whose saved time adds up to the compile time (compile_time_s "
            "includes the compiling calls' own execution); never: not faster compiled; n/a: no uncompiled "
            "item to compare."
        )
    missing = [group_name(group[0].row, runs) for group in groups if group[0].baseline is None]
    if missing:
        where = "; ".join(missing)
        note += f" No item at the defaults was measured for {where}: no speedup vs defaults there."
    return note


def variant_columns(groups: list[list[VariantRow]]) -> list[str]:
    """The variants CSV's columns: identity, the axes, then the numbers (units in the names)."""
    speeds = dict.fromkeys(throughput(group[0].row.mode).key for group in groups)
    return [
        "run",
        *ITEM_COORDINATES,
        *(axis.key for axis in AXES),
        "variant",
        LATENCY.key,
        "speedup_vs_defaults",
        *speeds,
        PEAK_MEMORY.key,
        ACHIEVED.key,
        MFU_METRIC.key,
        PARAMETERS.key,
        COMPILE_TIME_S,
        "compile_base_median_s",
        "speedup_vs_uncompiled",
        "compile_payback_calls",
    ]


def variant_record(entry: VariantRow) -> dict[str, object]:
    """One CSV row: raw values in the units their names say; None for what is missing or does not apply
    (compile_payback_calls is ``inf`` where compiling saves nothing)."""
    row = entry.row
    speed = throughput(row.mode).key
    base = entry.compile_base
    return {
        "run": row.run,
        **{key: getattr(row, key) for key in ITEM_COORDINATES},
        **entry.values,
        "variant": row.variant,
        LATENCY.key: entry.median_s,
        "speedup_vs_defaults": entry.speedup,
        **{key: _stored(row, key) for key in (speed, PEAK_MEMORY.key, ACHIEVED.key, MFU_METRIC.key)},
        **{key: _stored(row, key) for key in (PARAMETERS.key, COMPILE_TIME_S)},
        "compile_base_median_s": base.metric(LATENCY.key) if base is not None else None,
        "speedup_vs_uncompiled": entry.compile_speedup,
        "compile_payback_calls": entry.payback_calls,
    }


def _stored(row: Row, key: str) -> object:
    """The number as the JSON holds it (bytes stay integers)."""
    value = row.extra.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
