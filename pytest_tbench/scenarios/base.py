from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Work:
    """One measured call and how much it processes, for throughput."""

    call: Callable[[], object]
    samples: int
    tokens: int
