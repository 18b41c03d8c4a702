"""One row of the self-check's table, how a measured figure is judged against its reference, and the table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from tabulate import tabulate

Verdict = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """What was checked, what the plugin measured, what an independent measurement or rule expects."""

    name: str
    measured: str
    expected: str
    verdict: Verdict

    @classmethod
    def skipped(cls, name: str, why: str) -> Check:
        return cls(name, "-", why, "skip")


def relative_error(measured: float, reference: float) -> float:
    if reference <= 0:
        raise ValueError(f"a reference must be positive to compare against; got {reference!r}")
    return measured / reference - 1


def agreement(name: str, measured: float, reference: float, tolerance: float, unit: str) -> Check:
    """Pass when ``measured`` is within ``tolerance`` (a fraction) of ``reference``, both in ``unit``."""
    error = relative_error(measured, reference)
    return Check(
        name,
        f"{measured:.4g} {unit} ({error:+.1%})",
        f"{reference:.4g} {unit} ±{tolerance:.0%}",
        "pass" if abs(error) <= tolerance else "fail",
    )


def bracketed(name: str, measured: float, before: float, after: float, tolerance: float, unit: str) -> Check:
    """``agreement`` with the mean of a reference measured before and after the plugin, unless the reference
    itself moved by more than ``tolerance`` between the two: then the machine cannot confirm an agreement
    that close, and the row fails saying so rather than blaming either side."""
    reference = (before + after) / 2
    check = agreement(name, measured, reference, tolerance, unit)
    drift = relative_error(after, before)
    expected = f"{check.expected} (before {before:.4g}, after {after:.4g})"
    if abs(drift) > tolerance:
        return replace(
            check,
            expected=f"{expected}: the reference moved {drift:+.1%}, more than the tolerance; rerun when the "
            "machine is quiet",
            verdict="fail",
        )
    return replace(check, expected=expected)


def at_most(name: str, measured: float, limit: float, unit: str) -> Check:
    return Check(
        name, f"{measured:.4g} {unit}", f"<= {limit:.4g} {unit}", "pass" if measured <= limit else "fail"
    )


def holds(name: str, measured: str, expected: str, ok: bool) -> Check:
    return Check(name, measured, expected, "pass" if ok else "fail")


def render(checks: Iterable[Check]) -> str:
    rows = [(c.name, c.measured, c.expected, c.verdict.upper()) for c in checks]
    return tabulate(
        rows, ["check", "measured", "expected", "verdict"], tablefmt="github", disable_numparse=True
    )


def exit_code(checks: Iterable[Check]) -> int:
    """1 when any check failed, else 0 (skips do not fail: they say why in the table)."""
    return 1 if any(c.verdict == "fail" for c in checks) else 0
