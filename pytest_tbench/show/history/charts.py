"""Series grouped the way a history shows them: one chart per item case and metric, a line per machine, the
x axis the runs of all its lines in date order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_tbench.history.display import DisplayUnit, display_unit, parse_date
from pytest_tbench.history.series import Point, Series, SeriesKey, Step


@dataclass(frozen=True)
class Line:
    """One machine's series in a chart, with the steps found in it (by index into its points)."""

    series: Series
    steps: tuple[Step, ...] = ()

    @property
    def key(self) -> SeriesKey:
        return self.series.key

    def step_at(self, index: int) -> Step | None:
        return next((s for s in self.steps if s.index == index), None)


@dataclass(frozen=True)
class Chart:
    model: str
    mode: str
    case_id: str
    metric: str
    unit: str  # as stored
    lines: tuple[Line, ...]
    display: DisplayUnit
    runs: tuple[Point, ...] = ()  # every line's points, in date order: the x axis (position = index)
    positions: Mapping[int, int] = field(default_factory=dict, repr=False)  # run id -> index in runs

    def x(self, point: Point) -> int:
        """The position of ``point``'s run on the chart's x axis."""
        return self.positions[point.run_id]

    @property
    def machines(self) -> list[str]:
        return [line.key.machine for line in self.lines]

    @property
    def title(self) -> str:
        return f"{self.case_id}: {self.metric} ({self.display.label}) on {', '.join(self.machines)}"


def _checked_steps(key: SeriesKey, series: Series, steps: Sequence[Step]) -> tuple[Step, ...]:
    for step in steps:
        if not 0 <= step.index < len(series.points):
            raise ValueError(
                f"a step of {key.label()} starts at point {step.index}, but the series has "
                f"{len(series.points)} points: pass the steps found in this series, indexed from 0"
            )
    return tuple(sorted(steps, key=lambda s: s.index))


def build_charts(series: Sequence[Series], steps: Mapping[SeriesKey, Sequence[Step]]) -> list[Chart]:
    """Charts in the order their first series comes, each line's steps attached; a step for a series that is
    not among ``series``, or past its end, is an error (it would silently not show)."""
    known = {s.key for s in series}
    if unknown := [key for key in steps if key not in known]:
        raise ValueError(
            f"steps were given for {len(unknown)} series not being rendered, e.g. {unknown[0].label()}: "
            "pass the steps of the series you pass"
        )
    grouped: dict[tuple[str, str, str, str], list[Line]] = {}
    for one in series:
        k = one.key
        line = Line(one, _checked_steps(k, one, steps.get(k, ())))
        group = grouped.setdefault((k.model, k.mode, k.case_id, k.metric), [])
        if any(other.key.machine == k.machine for other in group):
            raise ValueError(f"two series for {k.label()}: pass each series once")
        group.append(line)
    charts = []
    for (model, mode, case_id, metric), lines in grouped.items():
        units = {line.key.unit for line in lines}
        if len(units) > 1:
            raise ValueError(
                f"{case_id} {metric} is stored in several units ({', '.join(sorted(units))}) on different "
                "machines: a chart needs one unit; filter by machine"
            )
        points = [(parse_date(p.date), p.run_id, p) for line in lines for p in line.series.points]
        runs = tuple(p for _, _, p in sorted(points, key=lambda t: (t[0], t[1])))
        values = [p.value for p in runs]
        display = display_unit(lines[0].key, values)
        positions = {p.run_id: i for i, p in enumerate(runs)}
        unit = units.pop()
        charts.append(Chart(model, mode, case_id, metric, unit, tuple(lines), display, runs, positions))
    return charts
