"""benches/gate_reliability.py --compare-setups: its plan and its figures, on made-up sessions."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest

from .conftest import bench_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_script("gate_reliability")


def test_each_trial_runs_every_session_once_in_a_seeded_order(bench: ModuleType) -> None:
    orders = [[p.name for p in bench.trial_plan([0.05, 0.1], random.Random(0))] for _ in range(2)]
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == sorted(
        ["ab-aa", "ab-ab0.05", "ab-ab0.1", "saved-aa", "saved-ab0.05", "saved-ab0.1", "processes-5-aa"]
    )
    rng = random.Random(0)
    assert len({tuple(p.name for p in bench.trial_plan([0.05], rng)) for _ in range(10)}) > 1


def record(setup: str, kind: str, trial: int, failed: bool, wall: float, **extra: Any) -> dict[str, Any]:
    return {"setup": setup, "kind": kind, "trial": trial, "failed": failed, "session_wall_s": wall, **extra}


def test_figures_per_setup_and_markdown(bench: ModuleType) -> None:
    records = []
    for trial in range(2):
        for kind, change in (("aa", 0.0), ("ab0.1", 0.1)):
            ab = {"status": "REGRESSED" if change else "unchanged", "change": change, "ci_width": 0.04}
            records.append(record("ab", kind, trial, bool(change), 40.0, item_wall_s=30.0, **ab))
            saved_failed = trial == 0  # a false failure in trial 0, a catch in trial 0
            records.append(
                record("saved", kind, trial, saved_failed, 10.0, item_wall_s=10.0, remeasured=True)
            )
            records.append(record("pytest-benchmark", kind, trial, True, 10.0, item_wall_s=10.0))
        records.append(record("processes-5", "aa", trial, False, 20.0, item_wall_s=15.0))
    setups = {s: bench.summarise_setup(records, s, [0.1]) for s in (*bench.GATES, bench.PROCESSES_5)}
    bench.add_cost_ratios(setups)

    ab = setups["ab"]
    assert (ab["false_failures"], ab["aa_sessions"], ab["catches"], ab["ab_sessions"]) == (
        0,
        2,
        {"ab0.1": 2},
        {"ab0.1": 2},
    )
    assert ab["median_trial_wall_s"] == 80.0  # A/A and A/B of one trial
    assert ab["item_wall_to_processes_5"] == 2.0 and ab["session_wall_to_processes_5"] == 2.0
    assert ab["paired_time"]["ab0.1"] == {
        "median_change": 0.1,
        "median_ci_width": 0.04,
        "verdicts": {"REGRESSED": 2},
    }
    assert (setups["saved"]["false_failures"], setups["saved"]["catches"]) == (1, {"ab0.1": 1})
    assert setups["saved"]["remeasured"] == {"aa": 2, "ab0.1": 2}
    assert setups["pytest-benchmark"]["false_failures"] == 2
    assert setups["processes-5"]["median_item_wall_s"] == 15.0

    figures = {
        "runs": 2,
        "model": "tiny-gpt2",
        "load": "none",
        "wall_time_s": 300,
        "slowdowns": [0.1],
        "setups": setups,
    }
    table = bench.markdown(figures)
    assert (
        "| tbench `--tbench-ab` (paired, time:5%) | 0 / 2 | 2 / 2 | 40.0 s | 30.0 s | 80.0 s | 2.00 |"
        in table
    )
    assert "| ab0.1 | +10.0% | 4.0% | REGRESSED 2 |" in table
