"""What one pytest session holds (in ``config.stash[STATE]``): its settings, model cache, the results measured
so far, the gate, the A/B sides, and under pytest-xdist each worker's share. The hooks (hooks.py) and the
xdist controller (xdist.py) read and write it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_tbench.core.metric_table import AB
from pytest_tbench.judge.gate import Gate
from pytest_tbench.judge.run_verdict import RunVerdict
from pytest_tbench.launch.ab.session import ABSession
from pytest_tbench.launch.conftests import Conftest
from pytest_tbench.measure.memory_errors import OomRecord
from pytest_tbench.models.loading import ModelCache, ModelKey
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import BenchmarkEntry, TBenchConfig
from pytest_tbench.show.results import ItemResult


@dataclass
class SessionState:
    config: TBenchConfig
    models: ModelCache
    results: list[ItemResult] = field(default_factory=list)
    last_user: dict[ModelKey, str] = field(default_factory=dict)
    ooms: OomRecord = field(default_factory=OomRecord)
    gate: Gate | None = None
    not_measured: list[dict[str, str]] = field(default_factory=list)
    preloaded: bool = False
    conftests: tuple[Conftest, ...] | None = None  # the session's, for worker processes (read at first use)
    run_json: dict[str, Any] | None = None  # the run as pytest-benchmark saved it, for --tbench-report
    store_line: str | None = None  # --tbench-store: what became of the run, for the terminal summary
    ab: ABSession | None = None  # --tbench-ab: the two sides' processes, started at the first item
    ab_run: RunVerdict | None = None  # --tbench-ab: the run's decision over all items, once they are done
    # Under a benchmark list: the entry that made each item, whose settings the item runs with.
    entries: dict[BenchCase, BenchmarkEntry] = field(default_factory=dict)
    restore_sigterm: Callable[[], None] = lambda: None
    # Under pytest-xdist, in the controller: each worker's share and GPUs, for machine_info.
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings_of(self, case: BenchCase) -> TBenchConfig:
        """The settings an item runs with: its benchmark list entry's, else the session's."""
        entry = self.entries.get(case)
        return entry.config if entry is not None else self.config

    def settled_ab_run(self) -> RunVerdict | None:
        """--tbench-ab: the run's decision over every item measured (each item's verdicts set to it in
        place, in its extra_info and so in the JSON); decided once, when the first caller needs it (the JSON
        being saved, or the session's end), after the last item."""
        if self.config.ab.side is None or self.ab_run is not None:
            return self.ab_run
        from pytest_tbench.judge.run_verdict import settle_run

        items = [
            (result.nodeid, result.extra_info[AB]["verdicts"])
            for result in self.results
            if isinstance(result.extra_info.get(AB), dict)
        ]
        if items:
            self.ab_run = settle_run(items, self.config.ab.undecided)
        return self.ab_run

    def not_measured_item(self, nodeid: str, outcome: str) -> None:
        """Record that an item measured nothing (once: an interrupted item may also get a report)."""
        if all(entry["fullname"] != nodeid for entry in self.not_measured):
            self.not_measured.append({"fullname": nodeid, "outcome": outcome})


STATE = pytest.StashKey[SessionState]()
