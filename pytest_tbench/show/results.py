"""What an item measured, kept for the terminal summary."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pytest_tbench.core.record import ItemRecord
from pytest_tbench.settings.cases import BenchCase


@dataclass(frozen=True)
class ItemResult:
    nodeid: str
    case: BenchCase
    extra_info: dict[str, Any]

    @cached_property
    def record(self) -> ItemRecord:
        # Read once the item is done: extra_info is complete by the time the summary asks.
        return ItemRecord.from_extra_info(self.case.as_params(), self.extra_info, fullname=self.nodeid)
