"""One item's measurement on its way from the rounds to pytest-benchmark's ``extra_info``.

Each step adds figures in a part of its own and gets a new measurement back; none changes one it was given:

  run_item (measure/item.py)        item, hardware, memory, metrics, flops, energy, profile
  pool (launch/pooling.py)          processes: one result of several workers
  torchrun's ranks (launch/)        ranks: per-rank figures summed
  A/B (launch/ab/launcher.py)       ab: the base side's pooled figures and the paired comparison
  measure_judged (launch/retries)   attempts, derived: the pool of attempts, throughput and limits
  the fixture (plugin/fixture.py)   session: the memory estimate, the benchmark-list entry, placement

``extra_info()`` turns it into the JSON object once, at the boundary. The keys are metric_table's (the JSON
keys of the run files, unchanged); ``source(key)`` says which part gave a figure, for a newcomer asking
where a number came from.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_tbench.core.metric_table import SAMPLES_PER_CALL, TOKENS_PER_CALL


@dataclass(frozen=True)
class Measurement(Mapping[str, Any]):
    """An item's figures by extra_info key, read-only (a ``Mapping``): add figures with ``add``, which returns
    a new measurement whose later part wins a key both have."""

    figures: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> the part that gave its value

    @classmethod
    def of(cls, *parts: tuple[str, Mapping[str, Any]]) -> Measurement:
        """A measurement of these (part name, figures), later over earlier."""
        return cls().add(*parts)

    def add(self, *parts: tuple[str, Mapping[str, Any]]) -> Measurement:
        figures, sources = dict(self.figures), dict(self.sources)
        for name, values in parts:
            for key, value in values.items():
                figures[key] = value
                sources[key] = name
        return Measurement(figures, sources)

    def without(self, *keys: str) -> Measurement:
        return Measurement(
            {k: v for k, v in self.figures.items() if k not in keys},
            {k: v for k, v in self.sources.items() if k not in keys},
        )

    def source(self, key: str) -> str | None:
        return self.sources.get(key)

    def extra_info(self) -> dict[str, Any]:
        """The JSON object pytest-benchmark saves: a copy, so that what is written cannot change the
        measurement (nested entries included)."""
        return copy.deepcopy(dict(self.figures))

    @property
    def samples_per_call(self) -> int:
        return int(self.figures.get(SAMPLES_PER_CALL) or 0)

    @property
    def tokens_per_call(self) -> int:
        return int(self.figures.get(TOKENS_PER_CALL) or 0)

    def __getitem__(self, key: str) -> Any:
        return self.figures[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.figures)

    def __len__(self) -> int:
        return len(self.figures)
