"""What the store reads back besides series: its runs (``tbench store list``) and the change points
``tbench trend --record`` wrote (the dashboard's annotations); and the machine label a run is stored under.
SQLAlchemy-free: the gate names this machine's label in the measuring process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
    found_at: str  # ISO 8601, UTC: when trend first found it
    cleared_at: str | None = None  # ISO 8601, UTC: when trend no longer found it (None: still found)


def machine_label(machine_info: Mapping[str, Any]) -> str:
    """Host name and the GPUs (by model, with a count) or the CPU: ``gpubox (2x NVIDIA H100 80GB HBM3)``."""
    tbench = machine_info.get("tbench") if isinstance(machine_info.get("tbench"), Mapping) else {}
    assert isinstance(tbench, Mapping)
    gpus = [str(g.get("name", "?")) for g in tbench.get("gpus") or [] if isinstance(g, Mapping)]
    if gpus:
        counts = dict.fromkeys(gpus, 0)
        for name in gpus:
            counts[name] += 1
        hardware = ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())
    else:
        cpu = machine_info.get("cpu")
        brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
        hardware = str(tbench.get("cpu") or brand or machine_info.get("processor") or "unknown CPU")
    return f"{machine_info.get('node') or 'unknown host'} ({hardware})"
