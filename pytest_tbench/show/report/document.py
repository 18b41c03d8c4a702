"""What a report says, in order, independent of the format it is written in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pytest_tbench.show.report.frame import Run
from pytest_tbench.show.report.metrics import group_by
from pytest_tbench.show.report.observations import observations
from pytest_tbench.show.report.plots import Plot
from pytest_tbench.show.report.tables import (
    Table,
    environment_table,
    mode_summary,
    model_tables,
    not_measured_table,
    ordered_modes,
)
from pytest_tbench.show.report.variants import variant_groups, variant_table


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class Document:
    title: str
    environment: Table
    observations: list[str]
    sections: list[Section]
    not_measured: Table | None


def build_document(
    runs: list[Run], plots: list[Plot], ab_verdicts: Table | None = None, extra: Sequence[Section] = ()
) -> Document:
    """The report's sections: A/B verdicts, then one per mode (its tables and plots), then ``extra`` (the
    profiles); a plot of a section of its own in ``extra`` is not repeated in its mode's."""
    rows = [row for run in runs for row in run.rows]
    several = len(runs) > 1
    by_mode = group_by(rows, lambda r: r.mode)
    sections = [] if ab_verdicts is None else [Section("A/B", [ab_verdicts])]
    for mode in ordered_modes(rows):
        mode_rows = by_mode[mode]
        tables = [mode_summary(mode, mode_rows, several), *model_tables(mode, mode_rows, several)]
        if groups := variant_groups(mode_rows):
            tables.append(variant_table(mode, groups, several))
        own = {id(p) for section in extra for p in section.plots}
        sections.append(Section(mode, tables, [p for p in plots if p.mode == mode and id(p) not in own]))
    sections.extend(extra)
    title = "tbench report: " + ", ".join(run.label for run in runs)
    return Document(title, environment_table(runs), observations(rows), sections, not_measured_table(runs))
