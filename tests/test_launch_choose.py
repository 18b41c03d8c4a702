"""--tbench-launcher: the table of launchers, the name the settings give, its usage errors, and a new row
being all a new launcher needs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.launch.choose import (
    LAUNCHERS,
    LauncherRow,
    choose_launcher,
    in_workers,
    launcher_error,
    launcher_name,
    runs_in_workers,
)
from pytest_tbench.launch.inprocess import InProcessLauncher
from pytest_tbench.launch.isolated import IsolatedLauncher
from pytest_tbench.launch.processes import ProcessesLauncher
from pytest_tbench.measure.memory_errors import OutOfMemory
from pytest_tbench.settings.ab import parse_side
from pytest_tbench.settings.config import TBenchConfig

from .conftest import TINY, run_json

# In the suite's parallel part: no timings compared.


@pytest.mark.parametrize(
    ("values", "name", "workers"),
    [
        ({}, "inprocess", False),
        ({"isolate": True}, "isolated", True),
        ({"processes": 3}, "processes", True),
        ({"isolate": True, "processes": 3}, "processes", True),
        ({"launcher": "isolated"}, "isolated", True),
        ({"launcher": "processes", "processes": 2}, "processes", True),
        ({"launcher": "inprocess"}, "inprocess", False),
    ],
)
def test_the_launcher_is_the_one_named_or_the_one_the_isolation_settings_say(
    values: dict[str, Any], name: str, workers: bool
) -> None:
    settings = TBenchConfig.of(**values)
    assert launcher_error(settings) is None
    assert launcher_name(settings) == name
    assert runs_in_workers(settings) is workers
    assert in_workers(settings, work=None) is workers
    assert in_workers(settings, work=object()) is False  # type: ignore[arg-type]  # a closure stays here


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (
            {"launcher": "forked"},
            ["'forked' is not a launcher", "valid: auto, inprocess, isolated, processes"],
        ),
        ({"launcher": "inprocess", "isolate": True}, ["--tbench-launcher inprocess", "--tbench-isolate"]),
        ({"launcher": "isolated", "processes": 4}, ["--tbench-processes 4", "drop one"]),
        ({"launcher": "processes"}, ["set N >= 2"]),
        ({"launcher": "isolated", "ab": parse_side("HEAD")}, ["--tbench-ab", "drop one"]),
    ],
)
def test_a_launcher_the_settings_contradict_is_a_usage_error_naming_both(
    values: dict[str, Any], words: list[str]
) -> None:
    error = launcher_error(TBenchConfig.of(**values))
    assert error is not None
    for word in words:
        assert word in error


def test_ab_runs_in_workers_whatever_launcher_auto_would_pick() -> None:
    assert runs_in_workers(TBenchConfig.of(ab=parse_side("HEAD")))


def _choose(settings: TBenchConfig) -> Any:
    return choose_launcher(settings, SimpleNamespace(), load=lambda: None)  # type: ignore[arg-type,return-value]


def test_each_built_in_name_makes_its_launcher() -> None:
    assert type(_choose(TBenchConfig.of(launcher="inprocess"))) is InProcessLauncher
    assert type(_choose(TBenchConfig.of(launcher="isolated"))) is IsolatedLauncher
    made = _choose(TBenchConfig.of(launcher="processes", processes=3))
    assert type(made) is ProcessesLauncher and made.processes == 3


class _Recorder:
    """A launcher of a test's own: what a new row adds."""

    def __init__(self, benchmark: Any) -> None:
        self.benchmark = benchmark

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        raise NotImplementedError


def test_a_new_launcher_is_a_row_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAUNCHERS, "recorder", LauncherRow(lambda where: _Recorder(where.benchmark), True))
    settings = TBenchConfig.of(launcher="recorder")
    assert launcher_error(settings) is None and runs_in_workers(settings)
    made = _choose(settings)
    assert type(made) is _Recorder
    # A user's tbench.measure() call is a closure of this process: in-process, whatever the launcher.
    closure = choose_launcher(settings, SimpleNamespace(), lambda: None, work=object())  # type: ignore[arg-type]
    assert type(closure) is InProcessLauncher
    assert "recorder" in (launcher_error(TBenchConfig.of(launcher="nope")) or "")


FORWARD = """
def test_forward(tbench):
    tbench.forward()
"""


def test_launcher_isolated_runs_the_item_in_a_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD)
    result, data = run_json(
        pytester, *TINY, "--tbench-rounds", "2", "--tbench-warmup", "0", "--tbench-launcher", "isolated"
    )
    result.assert_outcomes(passed=1)
    assert data["benchmarks"][0]["extra_info"]["isolated"] is True


def test_an_unknown_launcher_stops_the_session_before_any_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=FORWARD)
    pytester.makeini("[pytest]\ntbench_launcher = subprocess\n")
    result = pytester.runpytest(*TINY)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*'subprocess' is not a launcher; valid: auto, inprocess, isolated, processes*"]
    )
