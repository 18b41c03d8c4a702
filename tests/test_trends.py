"""history.trends: steps kept at a false discovery rate across series, recorded steps matched to new ones,
and counted metrics (FLOPs) said exactly; ``tbench trend`` says the counted changes first."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from pytest_tbench.cli import main
from pytest_tbench.history.changepoints import detect
from pytest_tbench.history.series import Point, Series, SeriesKey, SeriesSteps, Step
from pytest_tbench.history.store import open_store
from pytest_tbench.history.stored import ChangePoint
from pytest_tbench.history.trends import (
    control_false_discoveries,
    counted_changes,
    find_steps,
    findings,
    match_stored,
    new_regressions,
    regressions_since,
)
from tests.test_store import item, run


def series(values: list[float] | np.ndarray, name: str = "case", metric: str = "median_s") -> Series:
    key = SeriesKey("m", "forward", name, metric, "s", "box")
    points = tuple(
        Point(i + 1, f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00+00:00", f"{i + 1:040x}", "main", float(v))
        for i, v in enumerate(values)
    )
    return Series(key, points)


@pytest.fixture(scope="module")
def flat_200() -> list[SeriesSteps]:
    """200 flat series (1.5% Gaussian noise) with the steps ``detect`` finds in each at alpha 0.05: a screen
    that Benjamini-Hochberg at 0.05 or below can be run after (a step above 0.05 passes at neither)."""
    rng = np.random.default_rng(0)
    flat = [series(1.0 + 0.015 * rng.standard_normal(60), f"case-{i}") for i in range(200)]
    return [SeriesSteps(s, tuple(detect(s.values(), alpha=0.05))) for s in flat]


def test_false_discoveries_are_controlled_across_200_flat_series(flat_200: list[SeriesSteps]) -> None:
    # At alpha 0.05 per series, one of these 200 flat series has a false step (its p about 0.005: a chance
    # that 200 tries make likely); adjusted across the 200, none is left.
    assert sum(bool(entry.steps) for entry in flat_200) >= 1
    assert sum(len(entry.steps) for entry in control_false_discoveries(flat_200, 0.05)) == 0


def test_a_real_step_among_200_series_is_still_found_with_its_adjusted_p(flat_200: list[SeriesSteps]) -> None:
    values = 1.0 + 0.015 * np.random.default_rng(99).standard_normal(60)
    values[40:] *= 1.06
    (slower,) = find_steps([series(values, "slower")])  # one series: nothing to adjust over
    kept = control_false_discoveries([*flat_200[1:], slower], 0.01)
    (entry,) = [e for e in kept if e.steps]
    (step,) = entry.steps
    assert entry.series.key.case_id == "slower" and abs(step.index - 40) <= 1
    assert slower.steps[0].p_value < step.p_value <= 0.01  # adjusted over 200 hypotheses: larger, still kept


def test_trend_on_a_store_of_200_flat_series_reports_no_false_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tbench trend`` on a SQLite store written by ``Store.write_run``: 30 daily runs of 200 items at a flat
    level (1.5% Gaussian noise each) and one more item 8% slower from day 21. Tested one by one at alpha 0.05,
    some flat series show a step; across the 201 series tested, only the real one is left."""
    url = f"sqlite:///{tmp_path / 'flat200.sqlite'}"
    rng = np.random.default_rng(0)
    with open_store(url) as store:
        for day in range(1, 31):
            document = run(day, items=0)
            document["benchmarks"] = [
                item("flat", b, 0.01 * (1 + 0.015 * rng.standard_normal())) for b in range(1, 201)
            ] + [item("slower", 1, 0.01 * (1.08 if day >= 21 else 1.0) * (1 + 0.015 * rng.standard_normal()))]
            store.write_run(document, "pytest")
    import pytest_tbench.history.changepoints as changepoints

    alone: list[bool] = []  # per flat series: a step found when it is tested alone

    def spied(values: list[float], **options: object) -> list[Step]:
        steps = detect(values, **options)  # type: ignore[arg-type]
        if values[20] < 0.0105:  # a flat series (the slower one is at 0.0108 there)
            alone.append(bool(steps))
        return steps

    monkeypatch.setattr(changepoints, "detect", spied)
    assert main(["trend", "--store", url, "--alpha", "0.05"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(alone) == 200 and sum(alone) >= 1, sum(alone)  # tested alone, flat series show false steps
    assert out[0] == (
        "tbench trend: 1 steps in 201 series (6030 points; false discovery rate 0.05 across the 201 series "
        "tested)"
    )
    assert out[1].startswith("  forward-slower-b1-s8-cpu-float32 median_s on box") and len(out) == 2
    assert "(run 21), 2026-01-21T12:00:00+00:00: regression" in out[1]


def test_a_step_found_again_matches_its_record_within_three_points() -> None:
    s = series([1.0] * 20 + [1.1] * 20)
    step = Step(21, 1.0, 1.1, 1.1, 1.05, 1.15, 1e-6, regression=True)

    def recorded(run_id: int, regression: bool = True, cleared: str | None = None) -> ChangePoint:
        return ChangePoint(
            7, "box", "case", "median_s", run_id, "", "", 1.1, 1, 1, 0, regression, "D", cleared
        )

    (near,) = match_stored(SeriesSteps(s, (step,)), [recorded(20)])  # point 19: 2 points away
    assert near is not None and near.found_at == "D"
    assert match_stored(SeriesSteps(s, (step,)), [recorded(17)]) == [None]  # point 16: 5 away
    assert match_stored(SeriesSteps(s, (step,)), [recorded(20, regression=False)]) == [None]
    assert match_stored(SeriesSteps(s, (step,)), [recorded(20, cleared="E")]) == [None]
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    (old,) = findings([SeriesSteps(s, (step,))], [recorded(20)], now)
    (fresh,) = findings([SeriesSteps(s, (step,))], [], now)
    assert (old.new, old.first_seen, fresh.new, fresh.first_seen) == (False, "D", True, now.isoformat())
    assert new_regressions([old, fresh]) == [fresh]
    # --fail-since keys on the date first found, not the start of the new level (2026-01-01 here).
    assert regressions_since([fresh], datetime(2026, 2, 28, tzinfo=timezone.utc)) == [fresh]


def test_a_counted_metric_changes_exactly_where_timing_cannot_tell() -> None:
    flops = series([1.49e10] * 20 + [1.74e10] * 14, metric="flops_per_call")
    timing = series(list(1.0 + 0.05 * np.random.default_rng(3).standard_normal(34)))
    (change,) = counted_changes([flops, timing])
    assert change.index == 20
    assert "flops_per_call on box: 1.49e+10 -> 1.74e+10 (+16.8%) from commit 0000000" in change.line()
    assert counted_changes([series([4.0e8] * 10, metric="parameter_bytes")]) == []


def test_trend_says_counted_changes_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'counted.sqlite'}"
    with open_store(url) as store:
        for day in range(1, 13):
            document = run(day)
            for bench in document["benchmarks"]:
                bench["extra_info"]["flops_per_call"] = 2.0e9 if day < 8 else 2.3e9
            store.write_run(document, "pytest")
    assert main(["trend", "--store", url, "--case", "*-b1-*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "tbench trend: 1 changes in counted metrics (exact)"
    assert "flops_per_call on box (Test CPU): 2e+09 -> 2.3e+09 (+15.0%)" in out[1]
    assert out[2].startswith("tbench trend: 0 steps in 1 series")
