"""The history store (pytest_tbench/history/store.py): runs written whole or not at all, read back as series,
imported from saved JSON once, written by two processes at once, migrated or refused by schema version, and
a URL's password in no message and no JSON.

Every store test takes its URL from the ``store_url`` fixture, parametrised by database: SQLite here; a
PostgreSQL server's URL is another parameter of the same fixture."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

# Imported once for the whole module: an in-process pytester run that imported the plugin (and torch's
# compiler with it) for the first time forgets it afterwards, and the next one's import fails in torch.
import pytest_tbench.plugin.hooks  # noqa: F401
from pytest_tbench.cli import main as tbench_main
from pytest_tbench.core.errors import OptionError
from pytest_tbench.history import migrations, schema, store
from pytest_tbench.history.errors import StoreError
from pytest_tbench.history.series import Filters, SeriesSteps, Step
from pytest_tbench.history.store import Store, open_store
from pytest_tbench.history.urls import mask_url, mask_values
from pytest_tbench.history.urls import store_url as parse_url
from pytest_tbench.settings.store import StoreLocation, mask_text

from .conftest import TINY
from .forked import runpytest_forked

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret"
UNREACHABLE = f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store: a SQLite file, or a fresh database on the session's throwaway PostgreSQL server
    (tests/postgres_server.py; skipped with the reason where no server can be started)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    from tests.postgres_server import fresh_database

    server_url: str = request.getfixturevalue("postgres_url")
    return fresh_database(server_url, "store_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16])


@pytest.fixture
def opened(store_url: str) -> Any:
    with open_store(store_url) as opened_store:
        yield opened_store


def item(
    model: str, batch: int, median: float, tps: float | None = None, mode: str = "forward"
) -> dict[str, Any]:
    case_name = f"{model}-b{batch}-s8-cpu-float32"
    samples = [median * f for f in (0.9, 1.0, 1.1)]
    extra: dict[str, Any] = {
        "median_s": median,
        "peak_memory_bytes": 1000 * batch,
        "peak_memory_kind": "peak_rss",  # text: not a metric
        "cuda_available": False,  # a bool: not a metric
        "process_medians_s": [median],  # a list: not a metric
        "nan_metric_s": float("nan"),
    }
    if tps is not None:
        extra["throughput_tokens_per_s"] = tps
    return {
        "name": f"test_{mode}[{case_name}]",
        "fullname": f"benches/test_{mode}.py::test_{mode}[{case_name}]",
        "params": {
            "tbench_case": {
                "mode": mode,
                "model": model,
                "head": "base",
                "batch_size": batch,
                "seq_len": 8,
                "device": "cpu",
                "dtype": "float32",
                "compile": "default" if model == "compiled" else "off",
            }
        },
        "stats": {
            "median": median,
            "q1": samples[0],
            "q3": samples[2],
            "stddev": 0.1 * median,
            "rounds": 3,
            "data": samples,
        },
        "extra_info": extra,
    }


def run(day: int, scale: float = 1.0, commit: str = "", items: int = 2, host: str = "box") -> dict[str, Any]:
    benchmarks = [item("tiny-gpt2", b, 0.01 * b * scale, tps=800 / scale) for b in range(1, items + 1)]
    return {
        "machine_info": {
            "node": host,
            "cpu": {"brand_raw": "Raw CPU"},
            "tbench": {
                "cpu": "Test CPU",
                "gpus": [],
                "settings": {"store": {"value": f"postgresql://u:{SECRET}@db/h", "source": "command line"}},
            },
        },
        "commit_info": {"id": commit or f"{day:040x}", "branch": "main", "dirty": day == 3},
        "benchmarks": benchmarks,
        "datetime": f"2026-01-{day:02d}T12:00:00+00:00",
        "version": "5.3.1",
    }


def count(opened: Store, table: Any) -> int:
    with opened.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_run_reads_back_as_series(opened: Store) -> None:
    # Written newest first: the series are oldest first all the same.
    ids = [
        opened.write_run(run(day, scale), "import:x.json") for day, scale in ((3, 1.5), (1, 1.0), (2, 1.0))
    ]
    assert all(isinstance(i, int) for i in ids)
    (latency,) = opened.series(Filters(metric="median_s", case="*-b2-*"))
    assert latency.key.case_id == "forward-tiny-gpt2-b2-s8-cpu-float32"
    assert (latency.key.model, latency.key.mode, latency.key.unit) == ("tiny-gpt2", "forward", "s")
    assert latency.key.machine == "box (Test CPU)"
    assert not latency.key.higher_is_better
    assert [p.date[:10] for p in latency.points] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert latency.values() == pytest.approx([0.02, 0.02, 0.03])
    last = latency.points[-1]
    assert (last.run_id, last.commit, last.branch) == (ids[0], f"{3:040x}", "main")
    assert (last.low, last.high) == pytest.approx((0.027, 0.033))
    assert last.rounds == pytest.approx((0.027, 0.03, 0.033))
    (throughput,) = opened.series(Filters(metric="throughput_*", case="*-b1-*"))
    assert throughput.key.higher_is_better and throughput.key.unit == "tokens/s"
    assert throughput.values() == pytest.approx([800, 800, 800 / 1.5])
    assert throughput.points[0].rounds == () and throughput.points[0].low is None
    # Every finite number of extra_info is a metric; text, bools, lists and NaN are not.
    names = {s.key.metric for s in opened.series(Filters(case="*-b1-*"))}
    assert names == {"median_s", "peak_memory_bytes", "throughput_tokens_per_s"}
    assert opened.series(Filters(machine="other*")) == []
    assert (
        opened.series(Filters(model="tiny-gpt2", branch="main", metric="peak_memory_bytes"))[0].values()
        == [1000.0] * 3
    )
    listed = opened.runs()
    assert [(r.id, r.items, r.dirty) for r in listed] == [
        (ids[1], 2, False),
        (ids[2], 2, False),
        (ids[0], 2, True),
    ]


def test_variant_items_are_series_of_their_own(opened: Store) -> None:
    data = run(1)
    data["benchmarks"].append(item("compiled", 1, 0.5))
    opened.write_run(data, "pytest")
    cases = {s.key.case_id for s in opened.series(Filters(metric="median_s"))}
    assert cases == {
        "forward-tiny-gpt2-b1-s8-cpu-float32",
        "forward-tiny-gpt2-b2-s8-cpu-float32",
        "forward-compiled-b1-s8-cpu-float32-compile:default",
    }


def test_the_same_run_is_stored_once(opened: Store) -> None:
    assert opened.write_run(run(1), "pytest") is not None
    assert opened.write_run(run(1), "import:again.json") is None
    assert len(opened.runs()) == 1 and count(opened, schema.items) == 2


def test_a_run_stored_by_another_session_meanwhile_is_not_an_error(
    opened: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another session stores the same run between this one's check and its insert: the unique run key
    # refuses the second insert, and the run is stored once, without an error.
    first = opened.write_run(run(1), "pytest")
    checks = []
    real = Store._run_id

    def not_yet(conn: Any, key: str) -> int | None:
        checks.append(key)
        return None if len(checks) == 1 else real(conn, key)

    monkeypatch.setattr(Store, "_run_id", staticmethod(not_yet))
    assert opened.write_run(run(1), "import:x.json") is None
    assert len(checks) == 2 and [r.id for r in opened.runs()] == [first]


def test_a_run_interrupted_mid_write_leaves_nothing(opened: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    opened.write_run(run(1), "pytest")
    written = []
    real = store._write_item

    def failing(conn: Any, run_id: int, rows: Any) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C does between two items
        real(conn, run_id, rows)
        written.append(rows)

    monkeypatch.setattr(store, "_write_item", failing)
    with pytest.raises(KeyboardInterrupt):
        opened.write_run(run(2, items=5), "pytest")
    assert len(written) == 2
    assert [r.measured_at[:10] for r in opened.runs()] == ["2026-01-01"]
    assert (count(opened, schema.items), count(opened, schema.metrics)) == (2, 2 * 3)
    monkeypatch.setattr(store, "_write_item", real)
    assert opened.write_run(run(2, items=5), "pytest") is not None  # nothing half-written in its way


WRITER = """
import json, sys, time
from pathlib import Path
from pytest_tbench.history.store import open_store
url, folder, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
runs = json.loads((folder / f"runs-{name}.json").read_text())
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
with open_store(url) as store:
    for run in runs:
        run_id = store.write_run(run, "import:" + name)
        assert run_id is not None or run["machine_info"]["node"] == "shared", run_id
"""


def test_two_writers_at_once_both_land(store_url: str, tmp_path: Path) -> None:
    # Both open a new store (its schema created once) and write runs of 40 items each at the same time, and
    # the same run in between: stored once.
    shared = run(9, items=40, host="shared")
    batches = {name: [run(day, items=40, host=name) for day in range(1, 7)] for name in ("a", "b")}
    for runs in batches.values():
        runs.insert(3, shared)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    for name, runs in batches.items():
        (tmp_path / f"runs-{name}.json").write_text(json.dumps(runs))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, store_url, str(tmp_path), name],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in batches
    ]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{n}").exists() for n in batches) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with open_store(store_url) as opened:
        listed = opened.runs()
        machines = sorted(r.machine for r in listed)
        assert machines == ["a (Test CPU)"] * 6 + ["b (Test CPU)"] * 6 + ["shared (Test CPU)"]
        assert all(r.items == 40 for r in listed)
        assert count(opened, schema.meta) == 1


def test_a_newer_schema_is_refused(store_url: str) -> None:
    with open_store(store_url) as opened, opened.engine.begin() as conn:
        conn.execute(update(schema.meta).values(value="999"))
    with pytest.raises(StoreError) as caught:
        open_store(store_url)
    message = str(caught.value)
    assert "schema version 999" in message and f"version {schema.SCHEMA_VERSION}" in message
    assert "upgrade pytest-tbench" in message


def test_an_older_schema_is_migrated_step_by_step(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert migrations.current_version() == schema.SCHEMA_VERSION
    with open_store(store_url) as opened:
        opened.write_run(run(1), "pytest")
    applied = []

    def add_note_column(conn: Any) -> None:
        applied.append(True)
        conn.exec_driver_sql("ALTER TABLE tbench_runs ADD COLUMN note TEXT DEFAULT ''")

    following = schema.SCHEMA_VERSION + 1
    steps = [*migrations.MIGRATIONS, migrations.Migration(following, "add a note to runs", add_note_column)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    for _ in range(2):  # migrated once; the second opening finds the new version
        with open_store(store_url) as opened, opened.engine.connect() as conn:
            assert migrations.stored_version(conn) == following
            assert conn.exec_driver_sql("SELECT note FROM tbench_runs").scalar() == ""
    assert applied == [True]
    with open_store(store_url) as opened:
        assert len(opened.runs()) == 1  # the runs stored before the migration are still there


def test_a_version_1_store_gets_cleared_at_and_keeps_its_change_points(store_url: str) -> None:
    # A store written by a version-1 tbench: change_points without cleared_at, schema version 1.
    with open_store(store_url) as opened:
        for day, scale in ((1, 1.0), (2, 1.0), (3, 1.1), (4, 1.1)):
            opened.write_run(run(day, scale), "pytest")
        (latency,) = opened.series(Filters(metric="median_s", case="*-b1-*"))
        opened.record_change_points([SeriesSteps(latency, (Step(2, 0.01, 0.011, 1.1, 1.05, 1.15, 0.001),))])
        with opened.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE tbench_change_points DROP COLUMN cleared_at")
            conn.execute(update(schema.meta).values(value="1"))
    with open_store(store_url) as opened, opened.engine.connect() as conn:
        assert migrations.stored_version(conn) == 2
        assert conn.exec_driver_sql("SELECT cleared_at FROM tbench_change_points").all() == [(None,)]
        (kept,) = opened.change_points()
        assert kept.run_id == latency.points[2].run_id and kept.cleared_at is None


def test_change_points_are_recorded_replaced_and_read(opened: Store) -> None:
    for day, scale in ((1, 1.0), (2, 1.0), (3, 1.1), (4, 1.1)):
        opened.write_run(run(day, scale), "pytest")
    latency, throughput = opened.series(Filters(metric="[mt]*", case="*-b1-*"))
    up = Step(2, 0.01, 0.011, 1.1, 1.05, 1.15, 0.001)
    down = Step(2, 800, 727, 1 / 1.1, 0.88, 0.94, 0.001)
    assert opened.record_change_points([SeriesSteps(latency, (up,)), SeriesSteps(throughput, (down,))]) == 2
    found = opened.change_points(Filters(case="*-b1-*"))
    assert [(c.metric, c.regression, c.run_id, c.commit) for c in found] == [
        ("median_s", True, latency.points[2].run_id, f"{3:040x}"),
        ("throughput_tokens_per_s", True, throughput.points[2].run_id, f"{3:040x}"),
    ]
    assert found[0].ratio == pytest.approx(1.1) and found[0].measured_at.startswith("2026-01-03")
    # Trend again: the latency series has no step now (its change point is kept, cleared); the throughput
    # one keeps its own.
    assert opened.record_change_points([SeriesSteps(latency, ())]) == 0
    assert [c.metric for c in opened.change_points()] == ["throughput_tokens_per_s"]
    assert [c.metric for c in opened.change_points(cleared=True)] == ["median_s", "throughput_tokens_per_s"]
    assert opened.change_points(Filters(model="other")) == []
    with pytest.raises(ValueError, match="step at point 9"):
        opened.record_change_points([SeriesSteps(latency, (Step(9, 1, 1, 1, 1, 1, 1),))])


def test_a_value_longer_than_its_column_is_refused_alike_on_sqlite(opened: Store) -> None:
    """PostgreSQL refuses a mode name longer than its column; SQLite would keep it: refused on both, named."""
    data = run(1)
    data["benchmarks"][0]["params"]["tbench_case"]["mode"] = "m" * 40
    with pytest.raises(OptionError, match=r"its mode 'm{40}' is longer than the store's 32 characters"):
        opened.write_run(data, "pytest")
    assert count(opened, schema.runs) == 0


def test_reading_a_current_sqlite_store_takes_no_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """tbench store list / history / trend read a store another job writes, or a read-only copy: no BEGIN
    IMMEDIATE (the write lock) where the schema is current; a store to migrate still gets one."""
    path = tmp_path / "h.sqlite"
    with open_store(str(path)) as opened:
        opened.write_run(run(1), "pytest")
    begun: list[str] = []
    real = store._sqlite_begin

    def recorded(conn: Any) -> None:
        begun.append("write" if conn.get_execution_options().get(store._WRITE) else "read")
        real(conn)

    monkeypatch.setattr(store, "_sqlite_begin", recorded)
    assert tbench_main(["store", "list", "--store", str(path)]) == 0
    assert "1 runs in" in capsys.readouterr().out and begun and "write" not in begun
    begun.clear()
    with open_store(str(path)):  # a writer's open takes the lock, as before
        pass
    assert "write" in begun


def test_settings_are_stored_with_the_password_masked(opened: Store) -> None:
    opened.write_run(run(1), "pytest")
    with opened.engine.connect() as conn:
        settings, machine = conn.execute(
            select(schema.runs.c.settings_json, schema.runs.c.machine_json)
        ).one()
    assert SECRET not in settings and SECRET not in machine
    assert json.loads(settings)["store"]["value"] == "postgresql://u:***@db/h"


def test_an_unreachable_server_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(UNREACHABLE)
    message = str(caught.value)
    assert SECRET not in message
    assert "u:***@127.0.0.1:1/x" in message and "PGPASSWORD" in message
    assert tbench_main(["store", "list", "--store", UNREACHABLE]) == 2
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err and "cannot open store" in out.err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("runs/h.sqlite", "sqlite:////base/runs/h.sqlite"),
        ("sqlite:///runs/h.sqlite", "sqlite:////base/runs/h.sqlite"),
        ("sqlite:////abs/h.sqlite", "sqlite:////abs/h.sqlite"),
    ],
)
def test_url_forms(url: str, expected: str) -> None:
    assert parse_url(url, Path("/base")).render_as_string() == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db?password=q-secret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=q-secret",
            "postgresql://u@h/db?sslmode=require&sslpassword=***",
        ),
        ("postgresql://u@h/db?passfile=/home/q-secret/.pgpass", "postgresql://u@h/db?passfile=***"),
        ("postgresql://u:raw@q-secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p%40q-secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:with space q-secret@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_every_form_of_a_store_secret_is_masked(url: str, shown: str) -> None:
    """A password in the query (libpq reads it there), a raw "@" or a space in it: the settings recorded
    in the JSON and the store (StoreLocation, mask_values), every message (mask_text) and the URL as the
    store shows it (mask_url) hold none of it."""
    location = StoreLocation(url)
    assert str(location) == shown
    recorded = mask_values({"store": {"value": str(location)}, "said": f"cannot open {url}: refused"})
    assert "q-secret" not in json.dumps(recorded) and "q-secret" not in mask_url(url)
    assert "q-secret" not in mask_text(f"error near {url}")


@pytest.mark.parametrize("url", [f"mysql://u:{SECRET}@h/db", f"::not a url://u:{SECRET}@h", " "])
def test_bad_urls_are_refused_by_name(url: str) -> None:
    with pytest.raises(StoreError, match="give a file path, sqlite:///PATH") as caught:
        parse_url(url)
    assert SECRET not in str(caught.value)


def test_import_of_a_folder_twice_stores_once(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved.mkdir(parents=True)
    for day in (1, 2, 3):
        (saved / f"000{day}_run.json").write_text(json.dumps(run(day)))
    (saved / "notes.json").write_text(json.dumps({"not": "a run"}))
    (saved / "plain.json").write_text(json.dumps({**run(4), "benchmarks": [{"fullname": "t.py::test_x"}]}))
    folder = str(tmp_path / ".benchmarks")
    assert tbench_main(["store", "import", folder, "--store", store_url]) == 0
    out = capsys.readouterr()
    assert "3 runs stored, 0 already stored, 2 files skipped" in out.out
    assert "skipped" in out.err and "notes.json" in out.err and "no tbench item" in out.err
    assert tbench_main(["store", "import", folder, str(saved / "0001_run.json"), "--store", store_url]) == 0
    assert "0 runs stored, 3 already stored" in capsys.readouterr().out
    assert tbench_main(["store", "list", "--store", store_url]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("3 runs in ") and listing.count("box (Test CPU)") == 3
    assert f"{2:040x}"[:12] in listing and "(dirty)" in listing


def test_import_refuses_what_is_not_there(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tbench_main(["store", "import", str(tmp_path / "nope"), "--store", store_url]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert tbench_main(["store", "import", str(tmp_path / "empty"), "--store", store_url]) == 2
    assert "no *.json file" in capsys.readouterr().err


def test_the_default_store_is_the_environment_s_else_benchmarks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TBENCH_STORE", raising=False)
    # A command that only reads makes no store where there is none (a mistyped path would list none).
    assert tbench_main(["store", "list"]) == 2
    assert "tbench.sqlite: no such file; check the path" in capsys.readouterr().err
    assert not (tmp_path / ".benchmarks").exists()
    with open_store(".benchmarks/tbench.sqlite"):
        pass
    assert tbench_main(["store", "list"]) == 0
    monkeypatch.setenv("TBENCH_STORE", str(tmp_path / "env.sqlite"))
    with open_store(str(tmp_path / "env.sqlite")):
        pass
    assert tbench_main(["store", "list"]) == 0
    assert f"0 runs in sqlite:///{tmp_path / 'env.sqlite'}" in capsys.readouterr().out


BENCH = """
from pytest_tbench import TBench

def test_forward(tbench: TBench) -> None:
    tbench.forward()
"""


def test_a_session_writes_its_run_into_the_store(pytester: pytest.Pytester, store_url: str) -> None:
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*TINY, "--tbench-batch-sizes", "1,2", "--tbench-store", store_url)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*tbench STORE*", "tbench store: run 1 stored in * (2 items)"])
    with open_store(store_url) as opened:
        (stored,) = opened.runs()
        assert (stored.source, stored.items) == ("pytest", 2)
        series = opened.series(Filters(metric="median_s"))
        with opened.engine.connect() as conn:
            version = conn.execute(select(schema.runs.c.tbench_version)).scalar()
    # The stored case id is the pytest item's id, with its mode in front.
    assert [s.key.case_id for s in series] == [
        "forward-tiny-gpt2-b1-s8-cpu-float32",
        "forward-tiny-gpt2-b2-s8-cpu-float32",
    ]
    assert all(len(s.points[0].rounds) == 2 and s.points[0].value > 0 for s in series)
    assert version


def test_a_store_failure_keeps_the_results_and_never_shows_the_password(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH)
    out = pytester.path / "run.json"
    result = pytester.runpytest(*TINY, "--tbench-store", UNREACHABLE, f"--benchmark-json={out}")
    assert result.ret == 0  # the run is in its JSON; the store's failure is a warning
    result.stdout.fnmatch_lines(
        ["tbench store: run not stored: cannot open store postgresql+psycopg://u:***@127.0.0.1:1/x: *"]
    )
    assert "TBenchStoreWarning" in result.stdout.str()
    assert SECRET not in result.stdout.str() + result.stderr.str()
    text = out.read_text()
    assert SECRET not in text and len(json.loads(text)["benchmarks"]) == 1
    settings = json.loads(text)["machine_info"]["tbench"]["settings"]
    assert settings["store"] == {
        "value": "postgresql+psycopg://u:***@127.0.0.1:1/x",
        "source": "command line",
    }
    # Where the store is the run's only record, the failure can fail the session instead. (A process of its
    # own: a second in-process run imports SQLAlchemy afresh beside psycopg's first classes, and its error
    # would no longer be SQLAlchemy's.)
    required = runpytest_forked(pytester, *TINY, "--tbench-store", UNREACHABLE, "--tbench-store-required")
    assert required.ret == pytest.ExitCode.TESTS_FAILED
    required.stdout.fnmatch_lines(["tbench store: run not stored: *"])


def test_a_bad_store_url_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*TINY, "--tbench-store", f"mysql://u:{SECRET}@h/db")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tbench-store: store mysql://u:***@h/db: unsupported database 'mysql'*"])
    assert SECRET not in result.stderr.str()


def test_the_store_commands_do_not_import_torch(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(run(1)))
    code = (
        "import sys; from pytest_tbench.cli import main; "
        "assert main(['store', 'import', 'run.json', '--store', 'h.sqlite']) == 0; "
        "assert main(['store', 'list', '--store', 'h.sqlite']) == 0; "
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_two_bench_functions_of_one_case_make_two_series(opened: Store) -> None:
    first = item("tiny-gpt2", 1, 0.01)
    other = {
        **item("tiny-gpt2", 1, 0.02),
        "fullname": "benches/test_heads.py::test_logits[tiny-gpt2-b1-s8-cpu-float32]",
    }
    for day in (1, 2):
        opened.write_run({**run(day), "benchmarks": [first, other]}, "import:x.json")
    found = {s.key.case_id: s.values() for s in opened.series(Filters(metric="median_s"))}
    assert found == {
        "forward-tiny-gpt2-b1-s8-cpu-float32": [0.01, 0.01],
        "forward-tiny-gpt2-b1-s8-cpu-float32@test_logits": [0.02, 0.02],
    }


def test_a_stored_run_exports_as_the_json_it_was(
    opened: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_tbench.cli import main

    saved = run(1)
    opened.write_run(saved, "import:x.json")
    opened.write_run(run(2, scale=3.0), "import:y.json")
    out = tmp_path / "first.json"
    assert main(["store", "export", "1", "--store", opened.url.render_as_string(False), "-o", str(out)]) == 0
    assert "run 1 (2 items) written to" in capsys.readouterr().out
    exported = json.loads(out.read_text())
    assert (
        exported["datetime"] == saved["datetime"]
        and exported["commit_info"]["id"] == saved["commit_info"]["id"]
    )
    for again, before in zip(exported["benchmarks"], saved["benchmarks"], strict=True):
        assert again["fullname"] == before["fullname"]
        same = json.dumps(again["extra_info"], sort_keys=True) == json.dumps(
            before["extra_info"], sort_keys=True
        )
        assert same  # compared as JSON text: the NaN entry comes back as NaN
        assert again["stats"]["data"] == before["stats"]["data"]
        assert again["stats"]["median"] == pytest.approx(before["stats"]["median"])
        assert again["params"]["tbench_case"]["batch_size"] == before["params"]["tbench_case"]["batch_size"]
    # The newest run by default; tbench compare reads exports like saved runs (3x slower; three rounds a side
    # are too few for a verdict, but the figures are the stored ones).
    newest = tmp_path / "newest.json"
    assert main(["store", "export", "--store", opened.url.render_as_string(False), "-o", str(newest)]) == 0
    assert main(["compare", str(out), str(newest), "--drift", "0%"]) == 0
    compared = capsys.readouterr().out
    assert "10.000 ms       30.000 ms       +200.0%" in compared, compared
    assert main(["store", "export", "99", "--store", opened.url.render_as_string(False), "-o", str(out)]) == 2
    assert "no run 99" in capsys.readouterr().err
