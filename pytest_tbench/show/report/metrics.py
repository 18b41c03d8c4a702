"""Reading the metric table's quantities off report rows: grouped, and as (size, value) points."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from pytest_tbench.core.metric_table import Metric
from pytest_tbench.show.report.frame import Row

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` by ``key``, in the order each key and item first appears."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def points(rows: Iterable[Row], axis: Callable[[Row], int | None], metric: Metric) -> list[tuple[int, float]]:
    """(axis value, metric value) sorted by the axis, leaving out rows that lack either."""
    found = {}
    for row in rows:
        x, y = axis(row), metric.value(row)
        if x is not None and y is not None:
            found[x] = y
    return sorted(found.items())
