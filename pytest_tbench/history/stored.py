"""What the store reads back besides series: its runs (``tbench store list``) and the change points
``tbench trend --record`` wrote (the dashboard's annotations). SQLAlchemy-free."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunInfo:
    id: int
    measured_at: str  # ISO 8601, UTC
    commit: str  # "" outside a git repository
    branch: str
    dirty: bool
    machine: str
    items: int  # measured items stored
    source: str  # "pytest" or "import:<file>"


@dataclass(frozen=True)
class ChangePoint:
    id: int
    machine: str
    case_id: str
    metric: str
    run_id: int  # the first run of the new level
    measured_at: str  # ISO 8601, UTC, of that run
    commit: str
    ratio: float  # new level / old level
    ratio_low: float
    ratio_high: float
    p_value: float
    regression: bool  # worse, by the metric's direction
    found_at: str  # ISO 8601, UTC: when trend found it
