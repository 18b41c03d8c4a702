"""What tbench needs of pytest-benchmark's session object: the one module that touches its private API, so
that a change there is fixed here (the fixture's private API: measure/pytest_benchmark_api.py).

What it touches, and the test that fails if pytest-benchmark changes it:

- ``config._benchmarksession`` with its ``storage.path``, ``machine_id``, ``benchmarks`` and
  ``get_machine_info()``: where saved runs live (``storage_folder``, for --tbench-compare) and the run's JSON
  when nothing saves it (``build_run_json``, for --tbench-report); tests/test_gate.py and
  tests/test_report.py (test_tbench_report_option_writes_the_session).
- ``BenchmarkSession.xdist_warning`` (set when pytest-benchmark disabled itself only because xdist is on),
  its ``json``, ``save``, ``autosave``, ``compare``, ``compare_fail`` and ``compared_mapping``, and the
  entries of ``benchmarks`` (``fullname``, ``has_error``, ``as_dict``): under pytest-xdist a worker measures
  tbench items and saves nothing, and the controller's session holds what the workers sent
  (``measure_in_worker``, ``worker_saves_nothing``, ``entries_of``, ``add_received``);
  tests/test_xdist.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest


def _session(config: pytest.Config) -> Any | None:
    """pytest-benchmark's session object; None where the plugin is not active (``-p no:benchmark``)."""
    return getattr(config, "_benchmarksession", None)


def storage_folder(config: pytest.Config) -> Path:
    """The folder this machine's saved runs are in (``--benchmark-storage``, then the machine id), or the
    default folder where pytest-benchmark is not active."""
    session = _session(config)
    if session is None:
        return Path(".benchmarks")
    return Path(session.storage.path) / session.machine_id


def build_run_json(config: pytest.Config) -> dict[str, Any] | None:
    """The session's pytest-benchmark JSON built through its own hooks, as it builds it to save it; None when
    nothing was measured."""
    session = _session(config)
    if session is None or not session.benchmarks:
        return None
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output_json: dict[str, Any] = config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=session.benchmarks,
        include_data=True,
        machine_info=session.get_machine_info(),
        commit_info=commit_info,
    )
    config.hook.pytest_benchmark_update_json(
        config=config, benchmarks=session.benchmarks, output_json=output_json
    )
    return output_json


def measure_in_worker(benchmark: Any, config: pytest.Config, fullname: str) -> None:
    """In an xdist worker, let a tbench item's fixture measure (pytest-benchmark disables every fixture under
    xdist, as it cannot gather results; tbench sends them to the controller) and name it as one process
    would: ``fullname`` without the ``@group`` that ``--dist loadgroup`` appends to node ids. A fixture the
    user disabled (``--benchmark-disable``) stays disabled."""
    session = _session(config)
    if session is not None and session.xdist_warning:
        benchmark.disabled = False
    benchmark.fullname = fullname


def worker_saves_nothing(config: pytest.Config) -> None:
    """An xdist worker writes no JSON, autosaves nothing and compares nothing: the controller does, once, for
    every worker's items (else each worker would write its share over the same file)."""
    session = _session(config)
    if session is None:
        return
    session.json = None
    session.save = None
    session.autosave = None
    session.compare = None
    session.compare_fail = []
    session.compared_mapping = {}


def entries_of(config: pytest.Config, fullname: str) -> list[dict[str, Any]]:
    """An item's entries as pytest-benchmark's JSON holds them (raw rounds included), JSON-safe; [] when it
    measured nothing."""
    session = _session(config)
    if session is None:
        return []
    from pytest_benchmark.utils import safe_dumps

    found = [m for m in session.benchmarks if m and m.fullname == fullname and not m.has_error]
    return [json.loads(safe_dumps(m.as_dict(include_data=True))) for m in found]


class ReceivedBenchmark:
    """An item a worker measured, in the controller's session: answers what pytest-benchmark asks of its own
    entries when it writes the JSON, autosaves, compares and prints its table."""

    has_error = False

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self._entry = dict(entry)
        self.fullname = str(entry["fullname"])
        self.name = entry.get("name")
        self.group = entry.get("group")

    def __bool__(self) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:  # a stats value, as Metadata's (--benchmark-compare-fail)
        return self._entry["stats"][key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._entry["stats"].get(key, default)

    def as_dict(
        self, include_data: bool = True, flat: bool = False, stats: bool = True, cprofile: Any = None
    ) -> dict[str, Any]:
        result = {key: value for key, value in self._entry.items() if key != "stats"}
        if stats:
            numbers = dict(self._entry["stats"])
            if not include_data:
                numbers.pop("data", None)
            if flat:
                result.update(numbers)
            else:
                result["stats"] = numbers
        return result


def add_received(config: pytest.Config, entry: Mapping[str, Any]) -> None:
    """Add a worker's entry to the controller's session, which saves and shows it like its own."""
    session = _session(config)
    if session is not None:
        session.benchmarks.append(ReceivedBenchmark(entry))
