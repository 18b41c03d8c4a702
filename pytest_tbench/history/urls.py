"""Store URLs: what ``--tbench-store`` / ``tbench store --store`` accept, and their password masked for every
message.

Accepted forms:

- a file path (``.benchmarks/tbench.sqlite``) or ``sqlite:///PATH``: SQLite, embedded; the folder is made;
- ``postgresql://user@host:5432/db`` (psycopg 3; ``postgres://`` and ``postgresql+psycopg://`` too).

A PostgreSQL password may be in the URL (``user:password@host``) or, better, come from the environment as
libpq reads it: ``PGPASSWORD``, ``~/.pgpass`` (``PGPASSFILE``), ``PGSERVICE``; host, port and user likewise
(``PGHOST``, ``PGPORT``, ``PGUSER``) where the URL leaves them out. Every message shows the URL with its
password as ``***``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pytest_tbench.history.errors import StoreError
from pytest_tbench.settings.store import FORMS, mask_text


def is_path(text: str) -> bool:
    """A bare file path rather than a URL (``C:\\x`` has no ``://``)."""
    return "://" not in text


def mask_url(url: str | URL) -> str:
    """The URL as shown in messages: its password replaced by ``***``."""
    # SQLAlchemy hides the password of the authority only; mask_text also takes secrets out of the query.
    if isinstance(url, URL):
        return mask_text(url.render_as_string(hide_password=True))
    if is_path(url):
        return url
    try:
        return mask_text(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return mask_text(url)


def mask_values(value: Any) -> Any:
    """A JSON value with the password of every URL in its strings masked (settings may hold a store URL)."""
    if isinstance(value, str):
        return mask_text(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {key: mask_values(v) for key, v in value.items()}
    if isinstance(value, list):
        return [mask_values(v) for v in value]
    return value


def redact(message: str, url: URL) -> str:
    """A driver's message with the URL's password taken out, wherever it is quoted (it should be nowhere)."""
    message = mask_text(message)
    if url.password:
        message = message.replace(str(url.password), "***")
    return message


def store_url(text: str, base: Path | None = None) -> URL:
    """The SQLAlchemy URL of a store given as ``text``; a relative file path is taken from ``base`` (default:
    the current directory). StoreError names the masked text and the accepted forms."""
    text = text.strip()
    if not text:
        raise StoreError(f"no store given; give {FORMS}")
    if is_path(text):
        path = Path(text).expanduser()
        return URL.create("sqlite", database=str(path if path.is_absolute() else (base or Path.cwd()) / path))
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"store {mask_text(text)!r} is not a URL; give {FORMS}") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        # psycopg 3 is the driver tbench installs (the store extra); SQLAlchemy's default would be psycopg2.
        driver = url.drivername if "+" in url.drivername else "postgresql+psycopg"
        return url.set(drivername=driver.replace("postgres+", "postgresql+"))
    if backend == "sqlite":
        database = url.database
        if database and database != ":memory:" and not Path(database).is_absolute():
            url = url.set(database=str((base or Path.cwd()) / database))
        return url
    raise StoreError(f"store {mask_url(url)}: unsupported database {backend!r}; give {FORMS}")
