"""The run's one decision under --tbench-ab (judge/run_verdict.py), over simulated runs: many items whose
sides differ only by noise must not fail the run more often than its stated error rate, one real slowdown
among them must be found, and a small change of every item must be seen as the run's. Torch-free and fast:
the items' verdicts come from the same judging code as a session's, on synthetic paired rounds."""

from __future__ import annotations

import math
import random

import pytest

from pytest_tbench.core.criteria import parse_criteria
from pytest_tbench.core.metric_table import PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.judge.judge import REGRESSED, UNCHANGED
from pytest_tbench.judge.paired import ITEM_MEMORY_FLOOR_BYTES, SLOWER_WITHIN, judge_paired
from pytest_tbench.judge.run_verdict import ALPHA, RunVerdict, settle_run

CRITERIA = parse_criteria("time:5% tokens_per_s:5% peak_memory:5%")
PAIRS, ROUNDS = 8, 6


def _record(rounds: list[list[float]], own_memory: list[int] | None = None) -> ItemRecord:
    samples = [s for pair in rounds for s in pair]
    info: dict[str, object] = {
        "mode": "forward",
        "model": "m",
        "tokens_per_call": 64,
        "peak_memory_bytes": 2**30,
    }
    info["process_rounds"] = [len(pair) for pair in rounds]
    if own_memory is not None:
        info[PEAK_MEMORY_INCREASE_PER_PROCESS_BYTES] = own_memory
    return ItemRecord.from_extra_info(None, info, {"data": samples})


def _item(
    rng: random.Random, change: float, pair_sd: float, base_memory: int = 0, memory_change: int = 0
) -> list[dict[str, object]]:
    """An item's verdicts (as the JSON holds them): each pair's processes offset by ``pair_sd`` (log), its
    rounds by 1%, the current side slower by ``change``."""
    base, current = [], []
    for _ in range(PAIRS):
        offset = rng.gauss(0.0, pair_sd)
        base.append([0.01 * math.exp(rng.gauss(0, 0.01)) for _ in range(ROUNDS)])
        current.append(
            [0.01 * math.exp(math.log1p(change) + offset + rng.gauss(0, 0.01)) for _ in range(ROUNDS)]
        )
    memory = [base_memory + int(rng.gauss(0, 2**17)) for _ in range(PAIRS)]
    grown = [base_memory + memory_change + int(rng.gauss(0, 2**17)) for _ in range(PAIRS)]
    verdicts = judge_paired("x", CRITERIA, _record(base, memory), _record(current, grown))
    return [v.as_json() for v in verdicts]


def _run(rng: random.Random, changes: list[float], pair_sd: float, mode: str = "warn") -> RunVerdict:
    return settle_run([(f"item{i}", _item(rng, c, pair_sd)) for i, c in enumerate(changes)], mode)


def test_unchanged_runs_of_many_noisy_items_fail_at_most_at_the_stated_rate() -> None:
    # 48 items whose pair means scatter 4.6% (the README's noisy figures): each item's 99% interval
    # alone would fail some unchanged run in several percent of runs; the run's procedure holds it to ALPHA.
    rng = random.Random(1)
    runs = [_run(rng, [0.0] * 48, 0.046) for _ in range(40)]
    failed = sum(run.failed for run in runs)
    assert failed <= 2  # expected at most 0.4 at ALPHA = 1%
    assert ALPHA == 0.01
    # One test per item (time and tokens/s are the same rounds; memory is one more), and the run's own.
    assert {run.tests for run in runs} == {48 * 2 + 1}


def test_one_real_slowdown_among_many_is_found_and_named_alone() -> None:
    rng = random.Random(2)
    caught = 0
    for _ in range(20):
        run = _run(rng, [0.15] + [0.0] * 47, 0.026)
        caught += run.regressed == ["item0"]
        assert set(run.regressed) <= {"item0"}
    assert caught >= 18


def test_a_small_change_of_every_item_is_the_runs() -> None:
    # +3% everywhere, items too noisy to decide: the run's interval over pairs sees it. (An item whose own
    # interval reaches 5% may be REGRESSED: its interval does not rule the threshold out.)
    rng = random.Random(3)
    run = _run(rng, [0.03] * 24, 0.05)
    assert run.run is not None and 0.0 < run.run.low < 0.03 < run.run.high < 0.05
    assert run.run.status == SLOWER_WITHIN
    # +8% everywhere: the run regressed, whatever each item says.
    slow = _run(rng, [0.08] * 24, 0.03)
    assert slow.run is not None and slow.run.status == REGRESSED and slow.failed
    assert slow.line().startswith("tbench A/B: 24 items: ") and "; run +" in slow.line()


def test_the_closing_line_counts_items_by_outcome() -> None:
    items = [
        ("a", [{"criterion": "time:5%", "status": REGRESSED}]),
        (
            "b",
            [
                {"criterion": "time:5%", "status": UNCHANGED},
                {"criterion": "peak_memory:5%", "status": UNCHANGED},
            ],
        ),
        ("c", [{"criterion": "time:5%", "status": "cannot tell"}]),
        ("d", [{"criterion": "time:5%", "status": UNCHANGED}]),
    ]
    run = settle_run(items)
    assert run.line() == "tbench A/B: 4 items: 1 REGRESSED, 1 cannot tell, 2 unchanged"
    assert run.failed and run.undecided == ["c"]


@pytest.mark.parametrize(("mode", "fails"), [("pass", False), ("warn", False), ("fail", True)])
def test_undecided_items_fail_the_run_only_when_asked(mode: str, fails: bool) -> None:
    items = [
        ("a", [{"criterion": "time:5%", "status": "cannot tell"}]),
        ("b", [{"criterion": "time:5%", "status": UNCHANGED}]),
    ]
    run = settle_run(items, mode)
    assert run.failed is fails and run.as_json()["undecided"] == ["a"]
    assert run.as_json()["undecided_mode"] == mode


def test_a_regression_the_run_does_not_confirm_is_cannot_tell_with_why() -> None:
    # An item whose interval lies past no change and reaches the threshold, p = 0.004: alone it would fail;
    # among 40 unchanged items' tests Benjamini-Hochberg needs p <= 1% x 1/41.
    weak = {
        "criterion": "time:5%", "status": REGRESSED, "low": 0.002, "high": 0.09, "limit": 0.05,
        "p_value": 0.004, "test": "rounds", "text": "time +4.6% [...]: REGRESSED", "advice": None,
    }  # fmt: skip
    quiet = {
        "criterion": "time:5%", "status": UNCHANGED, "low": -0.01, "high": 0.01, "limit": 0.05,
        "p_value": 0.5, "test": "rounds", "text": "t: unchanged",
    }  # fmt: skip
    quiets = [(f"q{i}", [dict(quiet)]) for i in range(40)]
    run = settle_run([("weak", [weak]), *quiets])
    assert weak["status"] == "cannot tell" and weak["text"].endswith(": cannot tell")
    assert "not confirmed among the run's 41 tests (p=0.004; Benjamini-Hochberg at 1%)" in str(weak["advice"])
    assert not run.failed
    alone = dict(weak, status=REGRESSED)
    assert settle_run([("weak", [alone])]).failed  # one test: p = 0.004 <= 1%


def test_memory_is_judged_on_the_items_own_memory_pair_by_pair() -> None:
    rng = random.Random(4)
    mib = 2**20

    def memory(base: int, change: int) -> dict[str, object]:
        (found,) = [
            v for v in _item(rng, 0.0, 0.01, base, change) if str(v["criterion"]).startswith("peak_memory")
        ]
        return found

    # The whole process holds 1 GiB either way; the item's own 15 MiB tripling is what is judged.
    tripled = memory(15 * mib, 30 * mib)
    assert tripled["status"] == REGRESSED and tripled["unit"] == "bytes"
    assert tripled["change"] == pytest.approx(2.0, abs=0.05)
    # Unchanged processes move their own memory by allocator steps (here +-128 KiB): unchanged.
    assert memory(15 * mib, 0)["status"] == UNCHANGED
    # A small item: +2 MiB is +200%, but under the floor: never a regression.
    small = memory(1 * mib, 2 * mib)
    assert small["status"] == "larger, within threshold"
    assert small["limit"] == pytest.approx(ITEM_MEMORY_FLOOR_BYTES / ITEM_MEMORY_FLOOR_BYTES)


def test_the_run_level_test_takes_the_pairs_every_item_has() -> None:
    # With --tbench-ab-pairs MIN:MAX an undecided item has more pairs than the rest: the run's pairs are the
    # first MIN, so a pair's mean covers every item (here an extended item's 4 extra pairs are far off).
    quiet = {"criterion": "time:5%", "status": UNCHANGED, "low": -0.01, "high": 0.01, "limit": 0.05,
             "p_value": 0.5, "test": "rounds", "pair_log_ratios": [0.001, -0.001, 0.002, -0.002]}  # fmt: skip
    extended = dict(quiet, pair_log_ratios=[0.001, -0.001, 0.002, -0.002, 0.5, 0.5, 0.5, 0.5])
    run = settle_run([("a", [dict(quiet)]), ("b", [dict(quiet)]), ("c", [dict(quiet)]), ("d", [extended])])
    assert run.run is not None and run.run.pairs == 4 and abs(run.run.change) < 0.01
