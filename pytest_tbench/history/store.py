"""Every run in a database: ``open_store(url)`` gives a ``Store`` that writes runs (one transaction each),
reads series of one metric over runs, lists runs, and keeps the change points ``tbench trend`` found.

SQLAlchemy Core on SQLite (embedded, the default: a file) or PostgreSQL (psycopg 3, for teams and the Grafana
dashboard). Opening a store creates or migrates its schema (migrations.py). Every failure is a StoreError
whose message names the store by its masked URL (urls.py) and the fix.

Concurrency: SQLite writers take the database's write lock when their transaction begins (``BEGIN
IMMEDIATE``) and wait up to ``BUSY_TIMEOUT_S`` for another writer; PostgreSQL writers need no lock (a run's
rows are new rows), and two sessions importing the same run both succeed, one storing it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    case,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from pytest_tbench.core.metric_table import MEDIAN_S, METRICS
from pytest_tbench.core.version import VERSION as __version__
from pytest_tbench.history import migrations
from pytest_tbench.history.errors import StoreError
from pytest_tbench.history.ingest import ItemRows, run_rows
from pytest_tbench.history.schema import change_points, items, metrics, runs
from pytest_tbench.history.series import Filters, Point, Series, SeriesKey, SeriesSteps, Step, worse
from pytest_tbench.history.stored import ChangePoint, RunInfo
from pytest_tbench.history.urls import mask_url, redact, store_url

BUSY_TIMEOUT_S = 60.0  # how long a SQLite writer waits for another's transaction to end
CONNECT_TIMEOUT_S = 10  # how long to wait for a PostgreSQL server to answer
SOURCE_PYTEST = "pytest"  # a run a session wrote; imports are "import:<file>"
_WRITE = "tbench_write"  # execution option: this connection's transaction writes


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would open transactions itself, and not before DDL; SQLAlchemy's begin event (below) does it,
    # so that the schema is created inside the transaction that holds the lock.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock at once: two deferred transactions that both read, then both want to
    # write, would deadlock, and SQLite answers that with "database is locked" instead of waiting.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # The user's own settings (a URL's connect_timeout, libpq's PGCONNECT_TIMEOUT) win over the default: a
    # connect_timeout passed here would override the environment's, so none is passed where one is set.
    given = "connect_timeout" in url.query or bool(os.environ.get("PGCONNECT_TIMEOUT"))
    return create_engine(url, connect_args={} if given else {"connect_timeout": CONNECT_TIMEOUT_S})


def describe(exc: BaseException) -> str:
    """A database error in one line: the driver's message, without SQLAlchemy's statement and parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _iso(value: datetime) -> str:
    """A stored time as ISO 8601 UTC (SQLite gives it back without its zone)."""
    aware = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return aware.isoformat()


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _matches(pattern: str, value: str) -> bool:
    return not pattern or fnmatchcase(value, pattern)


def _selected(
    filters: Filters, model: str, mode: str, case_id: str, metric: str, machine: str, branch: str
) -> bool:
    """Whether a row matches every glob of ``filters`` (the ones ``_where`` left to Python)."""
    pairs = (
        (filters.model, model),
        (filters.mode, mode),
        (filters.case, case_id),
        (filters.metric, metric),
        (filters.machine, machine),
        (filters.branch, branch),
    )
    return all(_matches(pattern, value) for pattern, value in pairs)


def _where(column: Any, pattern: str) -> list[ColumnElement[bool]]:
    """The SQL side of a glob filter: an exact name is matched by the database, a glob in Python."""
    return [column == pattern] if pattern and not _has_magic(pattern) else []


def higher_is_better(metric: str, unit: str) -> bool:
    """By the metric table; a metric it does not list is better higher when it is a rate (tokens/s)."""
    known = METRICS.get(metric)
    if known is not None and known.better is not None:
        return known.better == "higher"
    return unit.endswith("/s")


@dataclass(frozen=True)
class _Row:
    run_id: int
    measured_at: datetime
    commit: str
    branch: str
    machine: str
    case_id: str
    model: str
    mode: str
    metric: str
    value: float
    unit: str
    q1: float | None
    q3: float | None
    rounds_json: str | None


class Store:
    """An open store; ``close()`` it (or use it as a context manager) to release its connections."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self.label = mask_url(url)  # the URL as every message names it

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    def _error(self, action: str, exc: BaseException) -> StoreError:
        return StoreError(redact(f"store {self.label}: {action} failed: {describe(exc)}", self.url))

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(action, exc) from None

    # Writing runs

    def write_run(self, run: dict[str, Any], source: str) -> int | None:
        """Store one pytest-benchmark run JSON, all its items or none; its run id, or None where the same
        run is stored already. ``source``: ``"pytest"`` for a session's run, ``"import:<file>"``.
        OptionError where ``run`` is not a run of tbench items."""
        rows = run_rows(run, source, __version__ if source == SOURCE_PYTEST else "")
        key = rows.run["run_key"]
        try:
            with self._writing() as conn:
                if self._run_id(conn, key) is not None:
                    return None
                run_id = _new_id(conn.execute(insert(runs).values(rows.run)))
                for item in rows.items:
                    _write_item(conn, run_id, item)
                return run_id
        except IntegrityError as exc:
            # Another session stored the same run between our check and our insert: stored once, as asked.
            with self._reading("reading a run") as conn:
                if self._run_id(conn, key) is not None:
                    return None
            raise self._error("writing a run", exc) from None
        except SQLAlchemyError as exc:
            raise self._error("writing a run", exc) from None

    @staticmethod
    def _run_id(conn: Connection, key: str) -> int | None:
        found = conn.execute(select(runs.c.id).where(runs.c.run_key == key)).scalar()
        return None if found is None else int(found)

    # Reading

    def runs(self) -> list[RunInfo]:
        """Every stored run, oldest first, with its count of items."""
        count = select(func.count(items.c.id)).where(items.c.run_id == runs.c.id).scalar_subquery()
        query = select(
            runs.c.id,
            runs.c.measured_at,
            runs.c.commit_id,
            runs.c.branch,
            runs.c.dirty,
            runs.c.machine,
            count,
            runs.c.source,
        ).order_by(runs.c.measured_at, runs.c.id)
        with self._reading("listing runs") as conn:
            rows = conn.execute(query).all()
        return [RunInfo(int(r[0]), _iso(r[1]), r[2], r[3], bool(r[4]), r[5], int(r[6]), r[7]) for r in rows]

    def newest_runs(self, last: int, machine: str = "", branch: str = "") -> list[RunInfo]:
        """The newest ``last`` stored runs whose machine and branch match (fnmatch globs; "" matches all),
        oldest first."""
        chosen = [r for r in self.runs() if _matches(machine, r.machine) and _matches(branch, r.branch)]
        return chosen[-last:] if last > 0 else []

    def run_json(self, run_id: int | None = None) -> dict[str, Any]:
        """Stored run ``run_id`` (None: the newest by date) as pytest-benchmark JSON (export.py)."""
        from pytest_tbench.history.export import run_document

        with self._reading("reading a run") as conn:
            query = select(runs)
            query = (
                query.where(runs.c.id == run_id)
                if run_id is not None
                else query.order_by(runs.c.measured_at.desc(), runs.c.id.desc()).limit(1)
            )
            run = conn.execute(query).mappings().first()
            if run is None:
                what = f"no run {run_id}" if run_id is not None else "no run at all"
                raise StoreError(f"store {self.label}: {what}; `tbench store list` shows the stored runs")
            rows = conn.execute(select(items).where(items.c.run_id == run["id"]).order_by(items.c.id))
            stored = [dict(row) for row in rows.mappings()]
        return run_document(dict(run), _iso(run["measured_at"]), stored)

    def series(self, filters: Filters | None = None) -> list[Series]:
        """One series per (machine, case id, metric) that ``filters`` match (fnmatch globs; an empty field
        matches all, so an empty metric gives every stored metric), points oldest first. A point's value is
        the metric in that run; for ``median_s`` it is the item's median with its quartiles and raw rounds."""
        filters = filters or Filters()
        query = (
            select(
                runs.c.id,
                runs.c.measured_at,
                runs.c.commit_id,
                runs.c.branch,
                runs.c.machine,
                items.c.case_id,
                items.c.model,
                items.c.mode,
                metrics.c.name,
                metrics.c.value,
                metrics.c.unit,
                items.c.q1_s,
                items.c.q3_s,
                # The rounds only where they are the point's: not repeated for every other metric.
                case((metrics.c.name == MEDIAN_S, items.c.rounds_json), else_=None),
            )
            .select_from(metrics.join(items, metrics.c.item_id == items.c.id).join(runs))
            .where(
                *_where(items.c.model, filters.model),
                *_where(items.c.mode, filters.mode),
                *_where(items.c.case_id, filters.case),
                *_where(metrics.c.name, filters.metric),
                *_where(runs.c.machine, filters.machine),
                *_where(runs.c.branch, filters.branch),
            )
            .order_by(runs.c.measured_at, runs.c.id, items.c.id)
        )
        grouped: dict[tuple[str, str, str], list[_Row]] = {}
        with self._reading("reading series") as conn:
            for r in conn.execute(query):
                row = _Row(*tuple(r))
                if not _selected(
                    filters, row.model, row.mode, row.case_id, row.metric, row.machine, row.branch
                ):
                    continue
                grouped.setdefault((row.machine, row.case_id, row.metric), []).append(row)
        return [_series(rows) for _, rows in sorted(grouped.items())]

    # Change points

    def record_change_points(self, found: Sequence[SeriesSteps], now: datetime | None = None) -> int:
        """Record the steps of each series in ``found``, in one transaction; the number of steps recorded.

        A step that a recorded change point of its series is (``trends.match_stored``) updates that row (its
        run, ratio and p-value refined) and keeps its ``found_at``, the date it was first found; a new step
        gets ``now``. A recorded change point that no step is any more gets ``cleared_at`` ``now`` and is
        kept (``change_points`` leaves it out unless asked)."""
        from pytest_tbench.history.trends import match_stored

        now = now or datetime.now(timezone.utc)
        for entry in found:
            for step in entry.steps:
                if not 0 <= step.index < len(entry.series.points):
                    raise ValueError(
                        f"{entry.series.key.label()}: step at point {step.index}, but the series has "
                        f"{len(entry.series.points)} points"
                    )
        recorded = 0
        try:
            with self._writing() as conn:
                for entry in found:
                    key = entry.series.key
                    rows = conn.execute(
                        select(change_points).where(
                            change_points.c.machine == key.machine,
                            change_points.c.case_id == key.case_id,
                            change_points.c.metric == key.metric,
                            change_points.c.cleared_at.is_(None),
                        )
                    ).mappings()
                    stored = [_change_point(r) for r in rows]
                    matches = match_stored(entry, stored)
                    for step, match in zip(entry.steps, matches, strict=True):
                        values = _change_point_row(entry, step)
                        if match is None:
                            conn.execute(insert(change_points).values(**values, found_at=now))
                        else:
                            conn.execute(
                                update(change_points).where(change_points.c.id == match.id).values(**values)
                            )
                        recorded += 1
                    kept = {m.id for m in matches if m is not None}
                    gone = [c.id for c in stored if c.id not in kept]
                    if gone:
                        conn.execute(
                            update(change_points).where(change_points.c.id.in_(gone)).values(cleared_at=now)
                        )
        except SQLAlchemyError as exc:
            raise self._error("recording change points", exc) from None
        return recorded

    def change_points(self, filters: Filters | None = None, cleared: bool = False) -> list[ChangePoint]:
        """The recorded change points of the series ``filters`` match (model and mode through the case id's
        items; branch through the run), oldest first: those the last analysis still found, and with
        ``cleared`` those it no longer found too."""
        filters = filters or Filters()
        cp = change_points
        query = (
            select(cp, items.c.model, items.c.mode, runs.c.branch)
            .select_from(
                cp.join(runs, cp.c.run_id == runs.c.id).join(
                    items, (items.c.run_id == cp.c.run_id) & (items.c.case_id == cp.c.case_id)
                )
            )
            .where(
                *_where(cp.c.machine, filters.machine),
                *_where(cp.c.case_id, filters.case),
                *_where(cp.c.metric, filters.metric),
                *(() if cleared else (cp.c.cleared_at.is_(None),)),
            )
            .order_by(cp.c.measured_at, cp.c.id)
        )
        found: dict[int, ChangePoint] = {}
        with self._reading("reading change points") as conn:
            for r in conn.execute(query).mappings():
                fields = (r["model"], r["mode"], r["case_id"], r["metric"], r["machine"], r["branch"])
                if not _selected(filters, *fields):
                    continue
                found.setdefault(int(r["id"]), _change_point(r))
        return list(found.values())


def _change_point(r: Any) -> ChangePoint:
    cleared = r["cleared_at"]
    return ChangePoint(
        int(r["id"]),
        r["machine"],
        r["case_id"],
        r["metric"],
        int(r["run_id"]),
        _iso(r["measured_at"]),
        r["commit_id"],
        float(r["ratio"]),
        float(r["ratio_low"]),
        float(r["ratio_high"]),
        float(r["p_value"]),
        bool(r["regression"]),
        _iso(r["found_at"]),
        None if cleared is None else _iso(cleared),
    )


def _change_point_row(entry: SeriesSteps, step: Step) -> dict[str, Any]:
    key, point = entry.series.key, entry.series.points[step.index]
    return {
        "machine": key.machine,
        "case_id": key.case_id,
        "metric": key.metric,
        "run_id": point.run_id,
        "measured_at": datetime.fromisoformat(point.date),
        "commit_id": point.commit,
        "ratio": step.ratio,
        "ratio_low": step.ratio_low,
        "ratio_high": step.ratio_high,
        "p_value": step.p_value,
        "regression": worse(step.ratio, key.higher_is_better),
    }


def _new_id(result: CursorResult[Any]) -> int:
    """The id an insert of one row gave it (SQLite's lastrowid, PostgreSQL's RETURNING)."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database gave no id for a new row")
    return int(key[0])


def _write_item(conn: Connection, run_id: int, item: ItemRows) -> None:
    item_id = _new_id(conn.execute(insert(items).values(run_id=run_id, **item.item)))
    if item.metrics:
        conn.execute(
            insert(metrics),
            [{"item_id": item_id, "name": n, "value": v, "unit": u} for n, v, u in item.metrics],
        )


def _series(rows: list[_Row]) -> Series:
    first = rows[0]
    key = SeriesKey(
        model=first.model,
        mode=first.mode,
        case_id=first.case_id,
        metric=first.metric,
        unit=first.unit,
        machine=first.machine,
        higher_is_better=higher_is_better(first.metric, first.unit),
    )
    points = []
    for row in rows:
        timing = row.metric == MEDIAN_S
        points.append(
            Point(
                run_id=row.run_id,
                date=_iso(row.measured_at),
                commit=row.commit,
                branch=row.branch,
                value=row.value,
                low=row.q1 if timing else None,
                high=row.q3 if timing else None,
                rounds=tuple(json.loads(row.rounds_json)) if timing and row.rounds_json else (),
            )
        )
    return Series(key, tuple(points))


def _schema_current(conn: Connection) -> bool:
    with conn.begin():
        return migrations.stored_version(conn) == migrations.current_version()


def open_store(url: str, base: Path | None = None, create: bool = True) -> Store:
    """Open the store at ``url`` (urls.py: a file path, ``sqlite:///PATH``, ``postgresql://...``; a relative
    path from ``base``), creating or migrating its schema. ``create=False`` (commands that only read): a
    SQLite file that does not exist is an error, not a new empty store (a mistyped path would show none)."""
    parsed = store_url(url, base)
    label = mask_url(parsed)
    database = parsed.database or ""
    sqlite_file = parsed.get_backend_name() == "sqlite" and database != ":memory:"
    if not create and sqlite_file and not Path(database).is_file():
        raise StoreError(
            f"store {label}: no such file; check the path, or write runs into it first (pytest "
            "--tbench-store PATH, or tbench store import .benchmarks/)"
        )
    try:
        engine = _engine(parsed)
    except (ImportError, NoSuchModuleError) as exc:
        raise StoreError(
            f"store {label}: its database driver is missing ({exc}); install it with "
            "pip install 'pytest-tbench[store]'"
        ) from None
    except OSError as exc:
        raise StoreError(f"store {label}: cannot make its folder: {exc}") from None
    try:
        with engine.connect() as conn:
            # A command that only reads takes no write lock where the schema is current already: a store
            # file others may read only (a shared, read-only mount) is read as it is.
            if create or not _schema_current(conn):
                conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    migrations.prepare(conn, label)
    except StoreError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        if parsed.get_backend_name() == "sqlite":
            fix = "check that the file is a SQLite database and its folder is writable"
        else:
            fix = (
                "check that the server runs and the URL's host, port, database and user; a password comes "
                "from the URL or the environment (PGPASSWORD, ~/.pgpass)"
            )
        raise StoreError(redact(f"cannot open store {label}: {describe(exc)}; {fix}", parsed)) from None
    except ImportError as exc:  # psycopg is imported on the first connection
        engine.dispose()
        raise StoreError(
            f"store {label}: its database driver is missing ({exc}); install it with "
            "pip install 'pytest-tbench[store]'"
        ) from None
    return Store(engine, parsed)
