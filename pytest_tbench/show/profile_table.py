"""The terminal's ``tbench PROFILE`` section (--tbench-profile): per profiled item, its trace file and its
heaviest operators by self time per round, on the host and on the device (measure/profile.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tabulate import tabulate

from pytest_tbench.core.metric_table import AB_BASE, MIB, PROFILE

SHOWN = 8  # operators per item and activity on the terminal; the JSON holds more
SHAPES_WIDTH = 48
LARGEST_SHOWN = 3  # allocations per item under --tbench-profile-memory


def profile_lines(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Lines of the section: nothing where no item was profiled."""
    lines: list[str] = []
    for item, info in items:
        sides = [("", info.get(PROFILE)), (" (base side)", (info.get(AB_BASE) or {}).get(PROFILE))]
        for label, profile in sides:
            if not isinstance(profile, Mapping):
                continue
            if "unavailable_reason" in profile:
                lines.append(f"{item}{label}: not profiled: {profile['unavailable_reason']}")
                continue
            round_ms = float(profile.get("round_ms") or 0.0)
            lines.append(
                f"{item}{label}: {profile.get('rounds')} profiled round(s), {round_ms:.2f} ms per round; "
                f"trace {profile.get('trace')}"
            )
            for kind in ("host", "device"):
                operators = profile.get(kind) or []
                if operators:
                    lines.append(_table(kind, operators[:SHOWN]))
            if isinstance(profile.get("memory"), Mapping):
                lines.extend(_memory_lines(profile["memory"]))
    return lines


def _memory_lines(memory: Mapping[str, Any]) -> list[str]:
    """--tbench-profile-memory: the round's allocations summed, the largest and where they were made."""
    if "unavailable_reason" in memory:
        return [f"CUDA memory history: not recorded: {memory['unavailable_reason']}"]
    lines = [
        f"CUDA memory history: {memory.get('allocations')} allocations, "
        f"{memory.get('allocated_bytes', 0) / MIB:.1f} MiB allocated, at most "
        f"{memory.get('round_peak_increase_bytes', 0) / MIB:.1f} MiB live above the round's start; "
        f"snapshot {memory.get('snapshot')} (open it in https://pytorch.org/memory_viz)"
    ]
    for allocation in (memory.get("largest") or [])[:LARGEST_SHOWN]:
        lines.append(f"  {allocation['bytes'] / MIB:.1f} MiB at {allocation['where']}")
    return lines


def _table(kind: str, operators: list[Mapping[str, Any]]) -> str:
    rows = [
        [
            op["name"],
            f"{op['calls']:g}",
            f"{op['self_ms']:.3f}",
            f"{op['share']:.1%}" if op.get("share") is not None else "n/a",
            _clip(str(op.get("shapes") or "")),
        ]
        for op in operators
    ]
    headers = [
        f"{kind} operator",
        "calls/round",
        "self (ms/round)",
        "share of round",
        "shapes (heaviest call)",
    ]
    return tabulate(rows, headers=headers, colalign=("left", "right", "right", "right", "left"))


def _clip(text: str) -> str:
    return text if len(text) <= SHAPES_WIDTH else text[: SHAPES_WIDTH - 3] + "..."
