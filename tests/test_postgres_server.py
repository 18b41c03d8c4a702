"""The throwaway PostgreSQL server the store's and the dashboard's tests run against
(tests/postgres_server.py): password authentication on loopback only, quick to start, gone after stop, and a
clear skip (or, in CI, a failure) with the reason where it cannot start."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests import postgres_server
from tests.postgres_server import PostgresServer, PostgresUnavailable

psycopg = pytest.importorskip("psycopg")


def connect(server: PostgresServer, password: str) -> Any:
    return psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user=postgres_server.SERVER_USER,
        password=password,
        dbname=postgres_server.DATABASE,
        connect_timeout=5,
    )


def test_password_authentication_on_loopback(postgres_server: PostgresServer, postgres_url: str) -> None:
    assert postgres_url == (
        f"postgresql+psycopg://tbench:{postgres_server.password}@127.0.0.1:{postgres_server.port}/tbench"
    )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(postgres_server, "not-the-password")
    with connect(postgres_server, postgres_server.password) as connection:
        settings = {
            name: connection.execute(f"SHOW {name}").fetchone()[0]
            for name in ("listen_addresses", "unix_socket_directories", "password_encryption", "port")
        }
        query = "SELECT rolpassword FROM pg_authid WHERE rolname = 'tbench'"
        (stored,) = connection.execute(query).fetchone()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(postgres_server.socket_dir),
        "password_encryption": "scram-sha-256",
        "port": str(postgres_server.port),
    }
    assert stored.startswith("SCRAM-SHA-256$")
    assert postgres_server.socket_dir.parent == postgres_server.root
    hba = (postgres_server.data / "pg_hba.conf").read_text()
    methods = {line.split()[-1] for line in hba.splitlines() if line.strip() and not line.startswith("#")}
    assert methods == {"scram-sha-256"}, "no trust or peer entry may let a connection in without the password"


def test_starts_in_seconds_and_stop_removes_everything() -> None:
    server = PostgresServer.create()
    try:
        server.start()
        assert server.startup_s < 20, f"the server took {server.startup_s:.1f} s to take connections"
        with connect(server, server.password) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert not server.root.exists()
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", server.port))


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_server, "POSTGRES_LIB", tmp_path)
    with pytest.raises(
        PostgresUnavailable, match=r"initdb, pg_ctl, postgres not on PATH.*'postgresql' package"
    ):
        PostgresServer.create()


def test_failed_start_names_the_step_and_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(postgres_server.SERVER_SETTINGS, "shared_buffers", "'lots'")
    server = PostgresServer.create()
    try:
        with pytest.raises(PostgresUnavailable) as raised:
            server.start()
    finally:
        server.stop()
    message = str(raised.value)
    assert "pg_ctl failed" in message
    assert "server log's tail" in message and "shared_buffers" in message
    assert not server.started and not server.root.exists()


UNAVAILABLE_CONFTEST = """
pytest_plugins = ["tests.postgres_server"]
"""
UNAVAILABLE_TEST = """
def test_needs_server(postgres_url):
    pass
"""


@pytest.mark.parametrize("required", ["", "1"])
def test_fixture_skips_with_the_reason_unless_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: str
) -> None:
    """Without a server the tests that need one skip, saying why; in CI (TBENCH_PG_REQUIRED=1, where the
    package is installed) they fail instead, so that a broken server does not pass as skips."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_server, "POSTGRES_LIB", tmp_path)
    monkeypatch.setenv("TBENCH_PG_REQUIRED", required)
    pytester.makeconftest(UNAVAILABLE_CONFTEST)
    pytester.makepyfile(test_db=UNAVAILABLE_TEST)
    result = pytester.runpytest("-p", "no:tbench", "-p", "no:cacheprovider", "-rs")
    if required:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*no PostgreSQL server for the test: *TBENCH_PG_REQUIRED=1*"])
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(
            ["*SKIPPED*no PostgreSQL server for the test: PostgreSQL server binaries*"]
        )
