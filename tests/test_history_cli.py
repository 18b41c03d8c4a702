"""``tbench trend`` and ``tbench history`` on a store: the steps found, said and gated; the files written."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pytest_tbench.cli import main
from pytest_tbench.history.series import Filters, SeriesSteps
from pytest_tbench.history.store import open_store
from pytest_tbench.history.trends import find_steps, parse_since
from tests.test_store import run

STEP_RUN = 21  # the first day of the slower level


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """30 daily runs of two items; from day STEP_RUN on, every timing is 8% slower (1% noise, seeded)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('trend') / 'history.sqlite'}"
    noise = random.Random(7)
    with open_store(url) as store:
        for day in range(1, 31):
            slower = 1.08 if day >= STEP_RUN else 1.0
            store.write_run(run(day, slower * (1 + noise.gauss(0, 0.01))), "import:synthetic")
    return url


def test_trend_finds_the_step_and_gates_on_its_date(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trend", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "2 steps in 2 series (60 points; false discovery rate 0.01 across the 2 series tested)" in out
    step_lines = [line for line in out.splitlines() if "from commit" in line]
    assert len(step_lines) == 2
    commit = f"{STEP_RUN:040x}"[:7]
    for line in step_lines:
        assert f"from commit {commit}" in line and "regression" in line, line
        assert "+8." in line or "+7." in line, line  # the ratio, about +8%
    # --fail-since keys on when a step was first found, not where its level starts: not recorded yet, these
    # are found now, so a date after the step's start still fails, and only a date to come passes.
    assert main(["trend", "--store", store_url, "--fail-since", f"2026-01-{STEP_RUN + 1:02d}"]) == 1
    assert "FAILED: 2 regression steps found since" in capsys.readouterr().out
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert main(["trend", "--store", store_url, "--fail-since", tomorrow]) == 0
    # Throughput moved the other way (tokens/s fell): a regression by its own direction.
    tokens = ["--metric", "throughput_tokens_per_s", "--case", "*-b1-*"]
    assert main(["trend", "--store", store_url, *tokens]) == 0
    assert "regression" in capsys.readouterr().out.split("from commit", 1)[1]


def test_trend_records_the_steps_for_the_dashboard(store_url: str) -> None:
    assert main(["trend", "--store", store_url, "--record", "--case", "*-b2-*"]) == 0
    with open_store(store_url) as store:
        (found,) = store.change_points(Filters(case="*-b2-*"))
    assert found.regression and found.commit == f"{STEP_RUN:040x}" and 1.06 < found.ratio < 1.10


def test_history_writes_plots_csv_and_page(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history"
    assert main(["history", "--store", store_url, "--out", str(out), "--metric", "*"]) == 0
    said = capsys.readouterr().out
    assert "steps marked" in said
    assert (out / "index.html").is_file() and (out / "history.csv").is_file()
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 30 * 2 * 3  # header; 30 runs x 2 items x 3 metrics (median, memory, tokens/s)
    assert len(list((out / "plots").glob("*.png"))) == 2 * 3


def test_bad_input_is_a_clear_error(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trend", "--store", store_url, "--fail-since", "last tuesday"]) == 2
    assert "'last tuesday' is not a date" in capsys.readouterr().err
    assert main(["trend", "--store", store_url, "--model", "llama*"]) == 2
    assert "no stored series matches" in capsys.readouterr().err


def test_since_forms() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    assert parse_since("7d", now) == datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    assert parse_since("36h", now) == datetime(2026, 11, 26, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-20") == datetime(2026, 11, 20, tzinfo=timezone.utc)


def test_the_nightly_gate_fails_once_on_the_first_night_a_step_shows(tmp_path: Path) -> None:
    """One run a night and ``tbench trend --fail-new`` after it: a step that starts on night STEP needs
    min_size (3) points to be reported, so the job fails on night STEP + 2, and not again the night after."""
    url = f"sqlite:///{tmp_path / 'nightly.sqlite'}"
    noise = random.Random(11)
    step, exits = 15, {}
    for night in range(1, step + 5):
        slower = 1.08 if night >= step else 1.0
        with open_store(url) as store:
            store.write_run(run(night, slower * (1 + noise.gauss(0, 0.005))), "pytest")
        exits[night] = main(["trend", "--store", url, "--fail-new", "--case", "*-b1-*"])
    assert [night for night, code in exits.items() if code == 1] == [step + 2]
    with open_store(url) as store:
        (recorded,) = store.change_points()
    assert recorded.regression and recorded.commit == f"{step:040x}"
    # The step was first found at the analysis of night STEP + 2, and that date stays through later nights.
    assert recorded.cleared_at is None
    assert main(["trend", "--store", url, "--case", "*-b1-*", "--fail-since", "1h"]) == 1
    assert main(["trend", "--store", url, "--case", "*-b1-*", "--fail-since", "2999-01-01"]) == 0


def test_a_recorded_step_keeps_its_first_date_and_one_no_longer_found_is_kept_cleared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kept.sqlite'}"
    with open_store(url) as store:
        for day in range(1, 21):
            store.write_run(run(day, 1.1 if day >= 10 else 1.0), "pytest")
        (series,) = store.series(Filters(case="*-b1-*", metric="median_s"))
        first, later = datetime(2026, 2, 1, tzinfo=timezone.utc), datetime(2026, 2, 2, tzinfo=timezone.utc)
        (entry,) = find_steps([series])
        assert store.record_change_points([entry], first) == 1
        assert store.record_change_points([entry], later) == 1  # found again: the same row
        (kept,) = store.change_points()
        assert kept.found_at == first.isoformat()
        assert store.record_change_points([SeriesSteps(series, ())], later) == 0  # no longer found
        assert store.change_points() == []
        (cleared,) = store.change_points(cleared=True)
        assert (cleared.found_at, cleared.cleared_at) == (first.isoformat(), later.isoformat())
