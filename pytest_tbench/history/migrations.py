"""The store's schema versions and the steps between them.

``MIGRATIONS[n]`` takes a store from version ``n`` to ``n + 1``; a new store is version 0 (no tables) and goes
through every step, so a fresh store and a migrated one are built by the same code. Step 0 creates the tables
of schema.py as they are now; a later step that adds a column adds it only where it is missing (a store
created at version 1 lacks it, a new store has it from step 0), so both end with the same tables.

``prepare`` runs under a lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write lock that
``BEGIN IMMEDIATE`` takes), so that two sessions opening a new store at once create it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, DateTime, inspect, select

from pytest_tbench.history import schema
from pytest_tbench.history.errors import StoreError

# pg_advisory_xact_lock's key for "the tbench schema": any constant both sessions agree on ("tbench" in hex).
SCHEMA_LOCK = 0x7462656E6368
VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class Migration:
    to_version: int
    what: str
    apply: Callable[[Connection], None]


def _create_v1(conn: Connection) -> None:
    schema.metadata.create_all(conn, checkfirst=True)


def _add_cleared_at(conn: Connection) -> None:
    # Version 2: tbench trend --record keeps a change point it no longer finds (cleared_at) rather than
    # deleting it, so that found_at stays the date each step was first found.
    table = schema.change_points.name
    if "cleared_at" not in {column["name"] for column in inspect(conn).get_columns(table)}:
        kind = DateTime(timezone=True).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN cleared_at {kind}")


MIGRATIONS: list[Migration] = [
    Migration(1, "create the tables", _create_v1),
    Migration(2, "keep change points no longer found (cleared_at)", _add_cleared_at),
]


def current_version() -> int:
    """The version this pytest-tbench writes: the last step's."""
    return MIGRATIONS[-1].to_version if MIGRATIONS else 0


def stored_version(conn: Connection) -> int:
    """The store's version: 0 where it has no version row (a new, empty database)."""
    if not inspect(conn).has_table(schema.meta.name):
        return 0
    value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == VERSION_KEY)).scalar()
    return int(value) if value is not None else 0


def _set_version(conn: Connection, version: int) -> None:
    table = schema.meta
    if conn.execute(select(table.c.key).where(table.c.key == VERSION_KEY)).first() is None:
        conn.execute(table.insert().values(key=VERSION_KEY, value=str(version)))
    else:
        conn.execute(table.update().where(table.c.key == VERSION_KEY).values(value=str(version)))


def prepare(conn: Connection, label: str) -> int:
    """Bring the store on ``conn`` (in a transaction) to ``current_version()``; the version it had. A store of
    a newer version is refused: this pytest-tbench would misread it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
    found, target = stored_version(conn), current_version()
    if found > target:
        from pytest_tbench.core.version import VERSION as __version__

        raise StoreError(
            f"store {label} has schema version {found}, newer than version {target} that pytest-tbench "
            f"{__version__} reads and writes: upgrade pytest-tbench (pip install -U pytest-tbench) to use "
            "this store, or give another store"
        )
    for step in MIGRATIONS[found:target]:
        step.apply(conn)
        _set_version(conn, step.to_version)
    return found
