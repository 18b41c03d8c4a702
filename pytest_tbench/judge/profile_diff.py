"""Where an A/B item's time went: the operator-level difference between the two sides' profiles
(--tbench-profile with --tbench-ab; measure/profile.py), told beside its verdict.

Per operator, self time per round and calls per round on each side (the device's where the sides profiled a
GPU, else the host's); an operator that one side's list lacks ran there for no measurable time (the lists
hold every operator but the lightest: measure/profile.py's TOP_OPERATORS). The changes are ranked by how much
time they add, so that a regression's first line is its largest cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_tbench.core.metric_table import AB_BASE, PROFILE


@dataclass(frozen=True)
class OperatorChange:
    name: str
    base_ms: float  # self time per round; 0.0: not in that side's profile
    current_ms: float
    base_calls: float
    current_calls: float

    @property
    def delta_ms(self) -> float:
        return self.current_ms - self.base_ms

    def describe(self) -> str:
        if self.base_ms == 0.0 and self.base_calls == 0.0:
            return f"{self.name} new {self.current_ms:.2f} ms"
        if self.current_ms == 0.0 and self.current_calls == 0.0:
            return f"{self.name} gone -{self.base_ms:.2f} ms"
        parts = [f"{self.delta_ms / self.base_ms:+.0%}" if self.base_ms > 0 else "from 0 ms"]
        if self.base_calls > 0 and abs(self.current_calls - self.base_calls) > 1e-9:
            parts.append(f"{self.current_calls / self.base_calls:.3g}x calls")
        return f"{self.name} {self.delta_ms:+.2f} ms ({', '.join(parts)})"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_ms": self.base_ms,
            "current_ms": self.current_ms,
            "delta_ms": self.delta_ms,
            "base_calls": self.base_calls,
            "current_calls": self.current_calls,
        }


def activity(base: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The activity both sides profiled that decides the time: the device's where both have it."""
    return "device" if base.get("device") and current.get("device") else "host"


def operator_changes(base: Mapping[str, Any], current: Mapping[str, Any]) -> list[OperatorChange]:
    """Every operator of either side's profile with its change, the largest added time first."""
    kind = activity(base, current)
    before = {op["name"]: op for op in base.get(kind) or []}
    after = {op["name"]: op for op in current.get(kind) or []}
    changes = [
        OperatorChange(
            name,
            float(before.get(name, {}).get("self_ms", 0.0)),
            float(after.get(name, {}).get("self_ms", 0.0)),
            float(before.get(name, {}).get("calls", 0.0)),
            float(after.get(name, {}).get("calls", 0.0)),
        )
        for name in dict.fromkeys([*after, *before])
    ]
    return sorted(changes, key=lambda change: -change.delta_ms)


def sides_profiles(info: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """An A/B item's (base, current) profiles, where both sides were profiled."""
    current = info.get(PROFILE)
    base = (info.get(AB_BASE) or {}).get(PROFILE)
    if isinstance(base, Mapping) and isinstance(current, Mapping):
        return base, current
    return None


def where_line(info: Mapping[str, Any], top: int = 3) -> str | None:
    """``where: aten::mm +3.10 ms (+28%, 2x calls), aten::add new 0.80 ms``: the operators that added the most
    time per round, with the round's own change; None without both sides' profiles."""
    found = sides_profiles(info)
    if found is None:
        return None
    base, current = found
    added = [change for change in operator_changes(base, current) if change.delta_ms > 0][:top]
    if not added:
        return None
    rounds = f"round {base.get('round_ms', 0.0):.2f} -> {current.get('round_ms', 0.0):.2f} ms"
    kind = activity(base, current)
    return f"where ({kind} self time per profiled round; {rounds}): " + ", ".join(c.describe() for c in added)
