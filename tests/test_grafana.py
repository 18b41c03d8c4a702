"""The Grafana dashboard (grafana/dashboards/tbench.json) and its provisioning: the JSON's structure, and
every SQL it holds (panel targets, template variables, annotations) run against a real PostgreSQL store, after
expanding Grafana's macros and variables the way Grafana does.

Supported, as Grafana's PostgreSQL datasource writes them (anything else left in a query fails the test):
- macros: ``$__timeFilter(col)`` -> ``col BETWEEN '<from>' AND '<to>'`` (RFC 3339, UTC), ``$__timeFrom()``,
  ``$__timeTo()`` -> ``'<from>'``/``'<to>'``, ``$__time(col)`` -> ``col AS "time"``, ``$__timeEpoch(col)``
  -> ``extract(epoch from col) AS "time"``;
- variables: ``${var:sqlstring}`` -> each value quoted with ``'`` (``'`` doubled inside), comma-joined;
  ``$var``, ``${var}`` and ``[[var]]`` the same (SQL datasources quote multi-value and All variables);
  ``${var:raw}``/``${var:csv}`` -> the values comma-joined unquoted. "All" is every value the variable's own
  query returns, as Grafana expands an All without a custom all value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
yaml = pytest.importorskip("yaml")

from pytest_tbench.history import schema  # noqa: E402
from tests.postgres_server import fresh_database  # noqa: E402

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tbench.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "tbench.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "tbench.yaml"

START = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
RUNS_PER_MACHINE = 6
# A quote in a machine's label: the variables' quoting must escape it, or the SQL breaks.
MACHINE_A = "ci-o'brien (cpu: Xeon 8480)"
MACHINE_B = "gpu-box (gpu: H100)"
FORWARD = "forward-gpt2-b1-s64-cpu-float32"
GENERATE = "generate-gpt2-b1-s64-n16-cpu-float32"
TRAIN = "train-bert-tiny-b8-s128-cpu-float32"


# -- Grafana's expansion -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


class UnexpandedSql(ValueError):
    """A macro, variable or format the expansion does not know: Grafana would send it as it is."""


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)\]\]")


def expand(sql: str, time_range: TimeRange, variables: dict[str, list[str]]) -> str:
    """``sql`` as Grafana sends it to PostgreSQL: template variables first (Grafana's frontend), then the
    datasource's macros (its backend)."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        form = match.group(2) or "sqlstring"
        if name.startswith("__"):
            raise UnexpandedSql(f"global variable or macro ${name} is not supported by this expansion: {sql}")
        if name not in variables:
            raise UnexpandedSql(f"variable ${name} is not defined (defined: {sorted(variables)})")
        values = variables[name]
        if form == "sqlstring":
            return ",".join(quote(value) for value in values)
        if form in ("raw", "csv"):
            return ",".join(values)
        raise UnexpandedSql(f"variable format ${{{name}:{form}}} is not supported (sqlstring, raw, csv)")

    def macro(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2).strip()
        start, end = rfc3339(time_range.start), rfc3339(time_range.end)
        if name == "timeFilter":
            return f"{argument} BETWEEN '{start}' AND '{end}'"
        if name == "timeFrom":
            return f"'{start}'"
        if name == "timeTo":
            return f"'{end}'"
        if name == "time":
            return f'{argument} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {argument}) AS "time"'
        raise UnexpandedSql(f"macro $__{name}() is not supported by this expansion")

    with_variables = VARIABLE.sub(lambda m: m.group(0) if m.group(0).startswith("$__") else variable(m), sql)
    expanded = MACRO.sub(macro, with_variables)
    if "$" in expanded or "[[" in expanded:
        raise UnexpandedSql(f"left unexpanded in: {expanded}")
    return expanded


def test_expand_macros_and_variables() -> None:
    time_range = TimeRange(START, START + timedelta(days=2))
    sql = (
        "SELECT $__time(r.measured_at), $__timeEpoch(t) FROM x WHERE $__timeFilter(r.measured_at) "
        "AND a IN (${machine:sqlstring}) AND b IN ($model) AND c IN ([[model]]) AND d = ${n:raw} "
        "AND e > $__timeFrom() AND e < $__timeTo()"
    )
    out = expand(sql, time_range, {"machine": ["it's", "b"], "model": ["gpt2"], "n": ["3"]})
    assert out == (
        'SELECT r.measured_at AS "time", extract(epoch from t) AS "time" FROM x '
        "WHERE r.measured_at BETWEEN '2026-03-01T12:00:00Z' AND '2026-03-03T12:00:00Z' "
        "AND a IN ('it''s','b') AND b IN ('gpt2') AND c IN ('gpt2') AND d = 3 "
        "AND e > '2026-03-01T12:00:00Z' AND e < '2026-03-03T12:00:00Z'"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $__timeGroup(t, '1h') FROM x",  # a macro this expansion does not know
        "SELECT 1 WHERE a IN ($nope)",  # an undefined variable
        "SELECT 1 WHERE a IN (${model:json})",  # an unsupported format
        "SELECT $__interval_ms",  # a global variable
    ],
)
def test_expand_refuses_what_it_does_not_know(sql: str) -> None:
    with pytest.raises(UnexpandedSql):
        expand(sql, TimeRange(START, START), {"model": ["gpt2"]})


# -- the dashboard's JSON ------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def provisioned_datasource() -> dict[str, Any]:
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    return dict(source)


def variables_of(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["templating"]["list"])


def sql_annotations(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in board["annotations"]["list"] if not a.get("builtIn")]


def variable_sql(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["rawSql"] if isinstance(query, dict) else query)


def annotation_sql(annotation: dict[str, Any]) -> str:
    return str(annotation["target"]["rawSql"] if "target" in annotation else annotation["rawQuery"])


def test_dashboard_structure() -> None:
    board = dashboard()
    source = provisioned_datasource()
    expected = {"type": source["type"], "uid": source["uid"]}
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    assert panels, "the dashboard has no panels"
    for panel in panels:
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
            assert target["rawQuery"] is True and target["rawSql"].strip(), panel["title"]
        # Every number says its unit.
        assert panel["fieldConfig"]["defaults"].get("unit"), f"panel {panel['title']!r} has no unit"
    for variable in variables_of(board):
        assert variable["datasource"] == expected, variable["name"]
    annotations = sql_annotations(board)
    assert {a["name"] for a in annotations} == {"Regressions", "Improvements"}
    for annotation in annotations:
        assert annotation["datasource"] == expected, annotation["name"]
    assert {v["name"] for v in variables_of(board)} == {"model", "mode", "case", "machine"}
    titles = " ".join(panel["title"].lower() for panel in panels)
    for subject in ("latency", "tokens/s", "samples/s", "memory", "energy"):
        assert subject in titles


def test_provisioning_files_are_documented() -> None:
    """Every environment variable the provisioning files read is in grafana/README.md, and the provider points
    at the dashboard's folder through one."""
    readme = (GRAFANA / "README.md").read_text()
    names: set[str] = set()
    for path in (DATASOURCE, PROVIDER):
        names |= set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert {"TBENCH_PG_HOST", "TBENCH_PG_PASSWORD", "TBENCH_GRAFANA_DASHBOARDS"} <= names
    assert not [name for name in names if name not in readme], "undocumented in grafana/README.md"
    (provider,) = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${TBENCH_GRAFANA_DASHBOARDS}"
    assert "password" not in provisioned_datasource().get("jsonData", {}), (
        "the password belongs in secureJsonData"
    )


# -- against PostgreSQL --------------------------------------------------------------------------------------


def fill_store(connection: Any) -> dict[str, int]:
    """A few runs on two machines, written as rows per schema.py (the store's writer may replace this): three
    cases, their metrics (energy on one machine only), two change points. Returns the run ids by label."""
    run_ids: dict[str, int] = {}
    cases = {
        FORWARD: ("gpt2", "forward", 64, 0),
        GENERATE: ("gpt2", "generate", 64, 16),
        TRAIN: ("bert-tiny", "train", 128, 0),
    }
    for machine_index, machine in enumerate((MACHINE_A, MACHINE_B)):
        for run in range(RUNS_PER_MACHINE):
            label = f"{machine_index}-{run}"
            measured_at = START + timedelta(days=run, hours=machine_index)
            run_id = connection.execute(
                schema.runs.insert().returning(schema.runs.c.id),
                {
                    "run_key": f"key-{label}",
                    "measured_at": measured_at,
                    "commit_id": f"abc123{run}" + "0" * 33,
                    "branch": "main",
                    "machine": machine,
                    "machine_json": "{}",
                    "settings_json": "{}",
                    "source": "pytest",
                },
            ).scalar_one()
            run_ids[label] = run_id
            for case_id, (model, mode, seq_len, new_tokens) in cases.items():
                median_s = 0.010 * (1 + 0.01 * run) * (machine_index + 1)
                item_id = connection.execute(
                    schema.items.insert().returning(schema.items.c.id),
                    {
                        "run_id": run_id,
                        "name": f"test_bench.py::test_{mode}[{case_id}]",
                        "case_id": case_id,
                        "model": model,
                        "mode": mode,
                        "batch_size": 8 if mode == "train" else 1,
                        "seq_len": seq_len,
                        "new_tokens": new_tokens,
                        "device": "cpu",
                        "dtype": "float32",
                        "median_s": median_s,
                        "q1_s": median_s * 0.99,
                        "q3_s": median_s * 1.01,
                        "rounds": 3,
                        "rounds_json": json.dumps([median_s] * 3),
                    },
                ).scalar_one()
                values = {"median_s": (median_s, "s"), "peak_memory_bytes": (2.0e8 + run, "bytes")}
                if mode == "train":
                    values["throughput_samples_per_s"] = (8 / median_s, "samples/s")
                else:
                    values["throughput_tokens_per_s"] = (64 / median_s, "tokens/s")
                if machine == MACHINE_B:
                    values["energy_per_call_j"] = (3.5, "J")
                connection.execute(
                    schema.metrics.insert(),
                    [
                        {"item_id": item_id, "name": name, "value": value, "unit": unit}
                        for name, (value, unit) in values.items()
                    ],
                )
    # The third: a regression a later analysis no longer found (cleared): no annotation.
    for machine_index, machine, case_id, ratio, low, high, regression, day, cleared in (
        (0, MACHINE_A, FORWARD, 1.072, 1.059, 1.084, True, 3, None),
        (1, MACHINE_B, GENERATE, 0.95, 0.93, 0.97, False, 3, None),
        (0, MACHINE_A, FORWARD, 1.05, 1.03, 1.07, True, 5, START + timedelta(days=11)),
    ):
        label = f"{machine_index}-{day}"
        connection.execute(
            schema.change_points.insert(),
            {
                "machine": machine,
                "case_id": case_id,
                "metric": "median_s",
                "run_id": run_ids[label],
                "measured_at": START + timedelta(days=day, hours=machine_index),
                "commit_id": "abc1234" + "0" * 33,
                "ratio": ratio,
                "ratio_low": low,
                "ratio_high": high,
                "p_value": 0.0001,
                "regression": regression,
                "found_at": START + timedelta(days=10),
                "cleared_at": cleared,
            },
        )
    return run_ids


@dataclass(frozen=True)
class Store:
    engine: Any
    run_ids: dict[str, int]
    all_values: dict[str, list[str]]  # each variable's values ("All"), from its own query


ALL_TIME = TimeRange(START - timedelta(days=1), START + timedelta(days=RUNS_PER_MACHINE + 1))


def run_sql(engine: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Runs ``sql`` as Grafana does: a plain query without parameters, so that ``%`` is no placeholder (the
    driver's cursor, not SQLAlchemy's, which would pass an empty parameter list and so parse them)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        columns = [column[0] for column in cursor.description]
        rows = [tuple(row) for row in cursor.fetchall()]
        connection.rollback()
        return columns, rows
    finally:
        connection.close()


@pytest.fixture(scope="module")
def store(postgres_url: str) -> Iterator[Store]:
    engine = sqlalchemy.create_engine(fresh_database(postgres_url, "grafana_test"))
    try:
        schema.metadata.create_all(engine)
        with engine.begin() as connection:
            run_ids = fill_store(connection)
        # Grafana fills the variables in order, each from its query with the ones before it expanded.
        values: dict[str, list[str]] = {}
        for variable in variables_of(dashboard()):
            _, rows = run_sql(engine, expand(variable_sql(variable), ALL_TIME, values))
            values[variable["name"]] = [str(row[0]) for row in rows]
        yield Store(engine, run_ids, values)
    finally:
        engine.dispose()


def test_variable_queries(store: Store) -> None:
    assert store.all_values == {
        "model": ["bert-tiny", "gpt2"],
        "mode": ["forward", "generate", "train"],
        "case": sorted([FORWARD, GENERATE, TRAIN]),
        "machine": sorted([MACHINE_A, MACHINE_B]),
    }
    # A variable narrowed by the one before it: only gpt2's modes.
    mode = next(v for v in variables_of(dashboard()) if v["name"] == "mode")
    _, rows = run_sql(store.engine, expand(variable_sql(mode), ALL_TIME, {"model": ["gpt2"]}))
    assert [row[0] for row in rows] == ["forward", "generate"]


PANELS = {panel["title"]: panel for panel in dashboard()["panels"]}


def panel_rows(
    store: Store, title: str, time_range: TimeRange = ALL_TIME, narrowed: dict[str, list[str]] | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Panel ``title``'s rows, every variable "All" except those ``narrowed`` names."""
    (target,) = PANELS[title]["targets"]
    return run_sql(
        store.engine, expand(target["rawSql"], time_range, {**store.all_values, **(narrowed or {})})
    )


@pytest.mark.parametrize("title", list(PANELS))
def test_panel_query_runs(store: Store, title: str) -> None:
    panel = PANELS[title]
    columns, rows = panel_rows(store, title)
    assert rows, f"panel {title!r} returned no rows"
    if panel["targets"][0]["format"] == "time_series":
        assert columns == ["time", "metric", "value"]
        times = [row[0] for row in rows]
        assert all(isinstance(t, datetime) and ALL_TIME.start <= t <= ALL_TIME.end for t in times)
        assert times == sorted(times), "Grafana wants time series rows in time order"
        assert all(isinstance(row[2], float) for row in rows)
        assert {row[1].rsplit(" on ", 1)[1] for row in rows} <= {MACHINE_A, MACHINE_B}
    else:
        assert columns[0] == "time" and len(rows) == 2 * RUNS_PER_MACHINE


def test_panel_values(store: Store) -> None:
    """The panels show the stored figures: seconds, tokens/s, bytes and joules as written."""
    _, latency = panel_rows(
        store, "Latency (median of rounds)", narrowed={"machine": [MACHINE_A], "case": [FORWARD]}
    )
    assert [round(row[2], 6) for row in latency] == [round(0.010 * (1 + 0.01 * r), 6) for r in range(6)]
    assert {row[1] for row in latency} == {f"{FORWARD} on {MACHINE_A}"}
    _, tokens = panel_rows(
        store, "Throughput (tokens/s)", narrowed={"case": [FORWARD], "machine": [MACHINE_B]}
    )
    assert tokens[0][2] == pytest.approx(64 / 0.020)
    _, energy = panel_rows(store, "Energy per call")
    assert {row[1].rsplit(" on ", 1)[1] for row in energy} == {MACHINE_B}  # where a meter measured it
    assert {row[2] for row in energy} == {3.5}
    _, samples = panel_rows(store, "Throughput (samples/s)")
    assert {row[1].split(" on ")[0] for row in samples} == {TRAIN}


TIME_SERIES = [title for title, panel in PANELS.items() if panel["targets"][0]["format"] == "time_series"]


@pytest.mark.parametrize("title", TIME_SERIES)
@pytest.mark.parametrize(
    ("variable", "value"), [("machine", MACHINE_A), ("model", "gpt2"), ("mode", "generate"), ("case", TRAIN)]
)
def test_panel_filters(store: Store, title: str, variable: str, value: str) -> None:
    """Narrowing a variable to one value keeps exactly the rows of that value."""
    _, everything = panel_rows(store, title)
    _, narrowed = panel_rows(store, title, narrowed={variable: [value]})

    def matches(row: tuple[Any, ...]) -> bool:
        case_id, machine = row[1].rsplit(" on ", 1)
        mode, model = case_id.split("-", 1)[0], case_id.split("-", 1)[1].rsplit("-b", 1)[0]
        return {"machine": machine, "model": model, "mode": mode, "case": case_id}[variable] == value

    assert narrowed == [row for row in everything if matches(row)]


def test_time_range_is_applied(store: Store) -> None:
    outside = TimeRange(START - timedelta(days=30), START - timedelta(days=20))
    for title in PANELS:
        assert panel_rows(store, title, outside)[1] == [], title
    one_day = TimeRange(START - timedelta(hours=1), START + timedelta(hours=2))  # run 0 of both machines
    _, rows = panel_rows(store, "Latency (median of rounds)", one_day)
    assert len(rows) == 2 * 3


def test_annotations(store: Store) -> None:
    texts: dict[str, list[tuple[Any, ...]]] = {}
    for annotation in sql_annotations(dashboard()):
        columns, rows = run_sql(store.engine, expand(annotation_sql(annotation), ALL_TIME, store.all_values))
        assert columns == ["time", "text", "tags"], annotation["name"]
        texts[annotation["name"]] = rows
    (regression,) = texts["Regressions"]
    assert regression[0] == START + timedelta(days=3)
    assert regression[1] == (
        f"{FORWARD} median_s on {MACHINE_A}: +7.2% [+5.9%, +8.4%] from commit abc1234 "
        f"(run {store.run_ids['0-3']}), p = 1.0e-04"
    )
    assert regression[2] == "regression,median_s"
    (improvement,) = texts["Improvements"]
    assert improvement[1].startswith(f"{GENERATE} median_s on {MACHINE_B}: -5.0% [-7.0%, -3.0%]")
    # The machine variable narrows them too.
    regressions = next(a for a in sql_annotations(dashboard()) if a["name"] == "Regressions")
    narrowed = expand(annotation_sql(regressions), ALL_TIME, {**store.all_values, "machine": [MACHINE_B]})
    assert run_sql(store.engine, narrowed)[1] == []


def test_the_stores_own_writer_feeds_every_panel(postgres_url: str) -> None:
    """The rows Store.write_run and `tbench trend --record` write (not fill_store's) are what the dashboard
    reads: its variables, its latency, throughput and memory panels, and the change points as annotations."""
    from pytest_tbench.cli import main
    from pytest_tbench.history.store import open_store
    from tests.test_store import run

    url = fresh_database(postgres_url, "grafana_writer")
    with open_store(url) as written:
        for day in range(1, 21):
            written.write_run(run(day, 1.2 if day >= 12 else 1.0), "import:synthetic")
    assert main(["trend", "--store", url, "--record"]) == 0
    engine = sqlalchemy.create_engine(url)
    try:
        span = TimeRange(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc))
        values: dict[str, list[str]] = {}
        for variable in variables_of(dashboard()):
            _, rows = run_sql(engine, expand(variable_sql(variable), span, values))
            values[variable["name"]] = [str(row[0]) for row in rows]
        assert values["model"] == ["tiny-gpt2"] and len(values["case"]) == 2
        for title in ("Latency (median of rounds)", "Throughput (tokens/s)", "Peak memory"):
            (target,) = PANELS[title]["targets"]
            _, rows = run_sql(engine, expand(target["rawSql"], span, values))
            assert len(rows) == 20 * 2, (title, len(rows))  # 20 runs x 2 items
        annotated = 0
        for annotation in sql_annotations(dashboard()):
            _, rows = run_sql(engine, expand(annotation_sql(annotation), span, values))
            annotated += len(rows)
        assert annotated >= 2  # the step in each item's latency (and its tokens/s)
    finally:
        engine.dispose()
