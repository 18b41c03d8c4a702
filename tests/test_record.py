"""The typed item record, the metric table and the mode table: real run JSONs read and written back
unchanged, and a mode defined here appearing in the terminal summary and the report with its own columns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_tbench.core import metric_table
from pytest_tbench.core.metric_table import GATE_METRICS, METRICS, PEAK_MEMORY, Metric
from pytest_tbench.core.modes import MODEL, MODES, Column, Mode, columns_for, metric_column
from pytest_tbench.core.record import Case, ItemRecord
from pytest_tbench.judge.metrics import extract
from pytest_tbench.scenarios import SCENARIOS, Scenario
from pytest_tbench.scenarios.forward import forward_work
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.show.report import run_of
from pytest_tbench.show.report.tables import model_tables
from pytest_tbench.show.results import ItemResult
from pytest_tbench.show.summary import summary_tables

from .conftest import ALL_MODES_BENCH, TINY, run_json


def _assert_round_trips(bench: dict[str, Any]) -> ItemRecord:
    record = ItemRecord.from_bench(bench)
    assert record.to_extra_info() == bench["extra_info"]
    assert json.loads(json.dumps(record.to_extra_info())) == bench["extra_info"]
    assert record.case == Case(**bench["params"]["tbench_case"])
    assert list(record.samples) == bench["stats"]["data"]
    assert record.fullname == bench["fullname"]
    return record


def test_real_runs_round_trip_through_the_record(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-new-tokens", "3")
    result.assert_outcomes(passed=3)
    records = {r.case.mode: r for r in map(_assert_round_trips, data["benchmarks"]) if r.case}
    assert set(records) == {"forward", "generate", "train"}
    assert records["generate"].case.new_tokens == 3  # type: ignore[union-attr]
    for record in records.values():
        assert record.process_rounds == ()
        assert record.metric(metric_table.PEAK_MEMORY_BYTES) == record.metrics["peak_memory_bytes"]
    # The gate reads a record and the JSON entry it came from alike.
    first = data["benchmarks"][0]
    assert extract("time", ItemRecord.from_bench(first)) == extract("time", first)


def test_a_run_in_several_processes_round_trips_with_its_process_groups(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH.split("@pytest.mark")[0])
    result, data = run_json(
        pytester, *TINY, "--tbench-rounds", "3", "--tbench-processes", "2", subprocess=True
    )
    result.assert_outcomes(passed=1)
    (bench,) = data["benchmarks"]
    record = _assert_round_trips(bench)
    assert record.process_rounds == (2, 1) and "process_rounds" not in record.metrics
    time = extract("time", record)
    assert time is not None and [len(g) for g in time.groups] == [2, 1]


def test_every_gate_metric_is_in_the_table_with_a_direction() -> None:
    assert set(GATE_METRICS) == {"time", "tokens_per_s", "ttft", "peak_memory"}
    for metric in GATE_METRICS.values():
        assert metric.better in ("lower", "higher") and METRICS[metric.key] is metric
    assert PEAK_MEMORY.gate == "peak_memory" and not PEAK_MEMORY.sampled
    assert GATE_METRICS["time"].sampled and GATE_METRICS["ttft"].rounds_key == "ttft_per_round_s"


def test_the_summary_and_the_report_render_the_same_columns() -> None:
    for mode in MODES:
        case = BenchCase(mode, "m", "lm", 1, 8, "cpu", "float32")
        ((_, text),) = summary_tables([ItemResult("x::t", case, {"median_s": 0.0123456})])
        header = text.splitlines()[0].split("  ")
        assert [h.strip() for h in header if h.strip()] == [
            MODEL.header,
            *(c.header for c in columns_for(mode)),
        ]
        if mode != "generate":  # the report's digits: a median in ms with two decimals
            assert "12.35" in text


# --- A mode and a metric defined here, and nowhere else ---------------------------------------------------
EMBED_NORM = Metric("embedding_norm_mean", "embedding norm", "", 1, 3, "higher")
EMBED = Mode(
    "embed",
    "base",
    EMBED_NORM,
    (
        Column("batch", "batch_size"),
        metric_column(EMBED_NORM, "norm"),
        metric_column(PEAK_MEMORY, "peak (MiB)"),
    ),
)


@pytest.fixture
def embed_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODES, "embed", EMBED)
    monkeypatch.setitem(
        SCENARIOS,
        "embed",
        Scenario("embed", lambda c: c.seq_len, lambda loaded, c, _: forward_work(loaded, c)),
    )


def test_a_mode_registered_here_gets_its_own_tables(embed_mode: None) -> None:
    assert SCENARIOS["embed"].default_head == "base"
    case = BenchCase("embed", "tiny-gpt2", "base", 2, 8, "cpu", "float32")
    info = {**case.as_params(), "embedding_norm_mean": 1.23456, "peak_memory_bytes": 3 * 1024 * 1024}
    ((title, text),) = summary_tables([ItemResult("t.py::e[x]", case, info)])
    assert title == "tbench EMBED - SPEED AND MEMORY"
    assert text.split()[:4] == ["model", "batch", "norm", "peak"] and "1.235" in text and "3.0" in text

    bench = {
        "fullname": "t.py::e[x]",
        "params": {"tbench_case": case.as_params()},
        "stats": {},
        "extra_info": info,
    }
    run = run_of({"benchmarks": [bench]}, "run")
    (table,) = model_tables("embed", run.rows, runs=False)
    assert table.headers == ["batch", "norm", "peak (MiB)"] and table.cells == [["2", "1.235", "3.0"]]
