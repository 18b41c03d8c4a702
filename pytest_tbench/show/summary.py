"""The end-of-session table per mode, in the spirit of the classic INFERENCE - SPEED - RESULT tables.

The columns are the report's (``modes``), led by the model: one terminal table holds every model of a mode.
"""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from pytest_tbench.core.axes import AXES
from pytest_tbench.core.modes import MODEL, Column, columns_for
from pytest_tbench.show.results import ItemResult


def summary_tables(results: Iterable[ItemResult]) -> list[tuple[str, str]]:
    """(title, table) per mode, rows in run order."""
    by_mode: dict[str, list[ItemResult]] = {}
    for result in results:
        by_mode.setdefault(result.case.mode, []).append(result)
    tables = []
    for mode, rows in by_mode.items():
        # A variant axis gets a column where the mode's rows differ from its default, so that rows which would
        # otherwise read alike say which variant each is.
        variants = tuple(
            Column(axis.tag, axis.key)
            for axis in AXES
            if any(getattr(r.case, axis.key) != axis.default for r in rows)
        )
        # Image and audio items have no token length (0): the column names their fixed input instead.
        media = (Column("media", "media"),) if any(r.case.media for r in rows) else ()
        columns = (MODEL, *media, *variants, *columns_for(mode))
        body = [[column.cell(r.record) for column in columns] for r in rows]
        table = tabulate(body, [c.header for c in columns], tablefmt="simple", disable_numparse=True)
        tables.append((f"tbench {mode.upper()} - SPEED AND MEMORY", table))
    return tables


LEGEND = (
    "peak mem: CUDA max allocated on GPU items, process peak RSS on CPU items; "
    "item +mem: that peak over the memory in use when the item started. "
    "generate: TTFT = prefill time, ms/token = mean decode step, times are means over measured rounds."
)
