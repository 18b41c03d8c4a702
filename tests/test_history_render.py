"""History rendering (show/history/render.py): CSV, PNG plots and the self-contained page, from hand-made
series whose points and steps the tests choose (no store)."""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from pytest_tbench.history.series import Point, Series, SeriesKey, Step
from pytest_tbench.show.history.plots import MAX_TICK_LABELS, tick_positions
from pytest_tbench.show.history.render import CSV_COLUMNS, HistoryFiles, write_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE_CASE = "forward-<script>alert(1)</script>-b1"


def key(case: str = "forward-gpt2-b1-s64-cpu-float32", machine: str = "box-a", **kw: object) -> SeriesKey:
    fields: dict[str, object] = {"model": "gpt2", "mode": "forward", "metric": "median_s", "unit": "s"}
    fields.update(kw)
    return SeriesKey(case_id=case, machine=machine, **fields)  # type: ignore[arg-type]


def series(k: SeriesKey, values: list[float], first_run: int = 1, day: int = 1, band: bool = True) -> Series:
    points = tuple(
        Point(
            run_id=first_run + i,
            date=f"2026-11-{day + i:02d}T08:00:00+00:00",
            commit=f"{first_run + i:07d}" + "f" * 33,
            branch="main",
            value=v,
            low=v * 0.99 if band else None,
            high=v * 1.01 if band else None,
        )
        for i, v in enumerate(values)
    )
    return Series(k, points)


def step(index: int, ratio: float) -> Step:
    return Step(index, 1.0, ratio, ratio, ratio - 0.01, ratio + 0.01, 1e-4)


LATENCY = series(key(), [0.0100, 0.0101, 0.0099, 0.0108, 0.0107, 0.0109])
OTHER_MACHINE = series(key(machine="box-b"), [0.0200, 0.0201, 0.0199, 0.0202], first_run=100, day=2)
THROUGHPUT = series(
    key(metric="throughput_tokens_per_s", unit="tokens/s", higher_is_better=True),
    [800.0, 805.0, 760.0, 758.0],
)
HOSTILE = series(key(case=HOSTILE_CASE, machine='m"<b>'), [0.5, 0.51], first_run=200, band=False)
STEPS = {LATENCY.key: [step(3, 1.08)], THROUGHPUT.key: [step(2, 0.95)]}


class _Page(HTMLParser):
    """The page's tags with their attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> HistoryFiles:
    return write_history(
        [LATENCY, OTHER_MACHINE, THROUGHPUT, HOSTILE], tmp_path_factory.mktemp("history"), STEPS
    )


def test_writes_csv_plots_and_page(written: HistoryFiles) -> None:
    files, out = written, written.out
    assert files.csv == out / "history.csv" and files.html == out / "index.html"
    # One plot per (case, metric): the two machines' latency share one.
    assert len(files.plots) == 3
    shared = next(p for p in files.plots if p.case_id == LATENCY.key.case_id and p.metric == "median_s")
    assert shared.machines == ("box-a", "box-b")
    assert files.series == 4 and files.steps == 2
    for path in files.paths():
        assert path.is_file() and path.stat().st_size > 0


def test_plots_are_png_images(written: HistoryFiles) -> None:
    files = written
    for plot in files.plots:
        data = plot.path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        height, width, _ = imread(plot.path).shape
        assert (width, height) == (900, 360)  # FIGSIZE at DPI


def test_csv_rows_equal_the_points_and_mark_the_steps(written: HistoryFiles) -> None:
    out = written.out
    with (out / "history.csv").open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    expected = [(s, p) for s in (LATENCY, OTHER_MACHINE, THROUGHPUT, HOSTILE) for p in s.points]
    assert len(rows) == len(expected)
    for row, (s, p) in zip(rows, expected, strict=True):
        assert (row["machine"], row["case_id"], row["metric"], row["unit"]) == (
            s.key.machine,
            s.key.case_id,
            s.key.metric,
            s.key.unit,
        )
        assert (int(row["run_id"]), row["date"], row["commit"], row["branch"]) == (
            p.run_id,
            p.date,
            p.commit,
            "main",
        )
        assert float(row["value"]) == p.value  # as stored: seconds, not the plot's ms
        assert row["low"] == ("" if p.low is None else repr(p.low))
    stepped = {(r["machine"], r["metric"], int(r["run_id"])): r for r in rows if r["step_ratio"]}
    assert set(stepped) == {("box-a", "median_s", 4), ("box-a", "throughput_tokens_per_s", 3)}
    assert float(stepped["box-a", "median_s", 4]["step_ratio"]) == 1.08
    # Slower latency is a regression; lower throughput is one too (higher is better there).
    assert {r["step_regression"] for r in stepped.values()} == {"True"}


def test_page_is_self_contained_and_escapes_the_data(written: HistoryFiles) -> None:
    out = written.out
    html = (out / "index.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 3
    assert all((attrs["src"] or "").startswith("data:image/png;base64,") for attrs in images)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"(https?:)?//", value), f"<{tag} {name}={value}> loads from outside"
        assert tag != "link"
    # The one script is the page's own sorter: the hostile case id is text, not markup.
    assert html.count("<script>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "m&quot;&lt;b&gt;" in html and "<b>" not in html
    assert any(HOSTILE_CASE in text for text in page.text)


def test_page_lists_series_with_latest_change_and_steps(written: HistoryFiles) -> None:
    out = written.out
    text = " ".join(_page_text(out))
    assert "gpt2 forward" in text
    # box-a's latency: 10.0 ms -> 10.9 ms, a step of +8% at run 4; shown in ms as pytest-benchmark would.
    assert "10.90 ms" in text and "+9.0%" in text
    assert "+8.0% [+7.0%, +9.0%] from 0000004 (run 4), 2026-11-04" in text
    assert "-5.0% [-6.0%, -4.0%] from 0000003 (run 3), 2026-11-03" in text
    html = (out / "index.html").read_text(encoding="utf-8")
    # Both steps are regressions (slower; fewer tokens/s): red, none green.
    assert html.count('class="regression"') == 4  # summary table and points table, each step
    assert 'class="improvement"' not in html
    assert html.count("<details>") == 4  # a points table per series


def _page_text(out: Path) -> list[str]:
    page = _Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    return page.text


def test_an_improvement_is_green(tmp_path: Path) -> None:
    files = write_history([THROUGHPUT], tmp_path, {THROUGHPUT.key: [step(2, 1.06)]})
    html = files.html.read_text(encoding="utf-8")
    assert 'class="improvement"' in html and 'class="regression"' not in html


def test_bytes_show_as_mib_and_a_series_without_band(tmp_path: Path) -> None:
    memory = series(key(metric="peak_memory_bytes", unit="bytes"), [512 * 2**20, 520 * 2**20], band=False)
    files = write_history([memory], tmp_path)
    assert "520.0 MiB" in " ".join(_page_text(tmp_path))
    assert files.steps == 0 and len(files.plots) == 1


def test_no_series_writes_an_empty_history(tmp_path: Path) -> None:
    files = write_history([], tmp_path)
    assert files.plots == () and "No series matched" in files.html.read_text(encoding="utf-8")
    assert files.csv.read_text(encoding="utf-8").strip() == ",".join(CSV_COLUMNS)


def test_bad_steps_are_refused_with_the_series_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"starts at point 9, but the series has 6 points"):
        write_history([LATENCY], tmp_path, {LATENCY.key: [step(9, 1.1)]})
    with pytest.raises(ValueError, match=r"not being rendered, e.g. .*throughput_tokens_per_s on box-a"):
        write_history([LATENCY], tmp_path, {THROUGHPUT.key: [step(1, 1.1)]})


def test_a_bad_date_is_refused_with_the_value(tmp_path: Path) -> None:
    bad = Series(LATENCY.key, (Point(1, "20/11/2026", "", "", 1.0),))
    with pytest.raises(ValueError, match=r"'20/11/2026' is not ISO 8601"):
        write_history([bad], tmp_path)


@pytest.mark.parametrize("runs", [1, 5, 12, 13, 60, 200])
def test_tick_labels_are_thinned_and_keep_the_newest_run(runs: int) -> None:
    ticks = tick_positions(runs)
    assert ticks[0] == 0 and ticks[-1] == runs - 1
    assert len(ticks) <= MAX_TICK_LABELS
    assert ticks == sorted(set(ticks))
    if runs <= MAX_TICK_LABELS:
        assert ticks == list(range(runs))
