"""What an item measured, kept for the terminal summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cases import BenchCase


@dataclass(frozen=True)
class ItemResult:
    nodeid: str
    case: BenchCase
    extra_info: dict[str, Any]
