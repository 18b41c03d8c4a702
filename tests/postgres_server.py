"""A throwaway PostgreSQL server for the tests that need a real one (the store's PostgreSQL path, the Grafana
dashboard's SQL): a cluster under a temp folder, password authentication (scram-sha-256) on TCP loopback, its
unix socket inside that folder, stopped and removed at the end of the session.

The tests start it themselves (``.ci/run`` only installs Debian's ``postgresql`` package): the session-scoped
``postgres_url`` fixture yields ``postgresql+psycopg://tbench:<password>@127.0.0.1:<port>/tbench``. It skips,
with the reason, where the server binaries are missing or the server does not start; with
``TBENCH_PG_REQUIRED=1`` (``.ci/run`` sets it where the package is installed) a server that does not start
fails the tests instead, so that a broken CI server is not hidden by skips.

PostgreSQL refuses to run as root: as root, every server command runs as the ``postgres`` system user
(``runuser -u postgres --``) in a folder it owns. Under pytest-xdist each worker starts its own cluster on its
own port (the kernel's free port, tried again on a collision).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SERVER_USER = "tbench"
DATABASE = "tbench"
SYSTEM_USER = "postgres"  # who runs the server when the tests run as root
START_TIMEOUT_S = 30
PORT_TRIES = 3
LOG_TAIL_LINES = 20
POSTGRES_LIB = Path("/usr/lib/postgresql")  # Debian's server binaries: <version>/bin, off PATH

# A test cluster's data is thrown away: no durability, so that initdb and every commit are quick.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "'32MB'",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """The server could not be found or started; the message says which binary or step, and why."""


def find_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: the one ``initdb`` on PATH resolves to (Debian puts
    them in /usr/lib/postgresql/<version>/bin, off PATH), else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(
        POSTGRES_LIB.glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    candidates.extend(versions)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in SERVER_BINARIES):
            return folder
    missing = [name for name in SERVER_BINARIES if shutil.which(name) is None]
    raise PostgresUnavailable(
        f"PostgreSQL server binaries not found ({', '.join(missing) or 'initdb/pg_ctl/postgres'} not on "
        f"PATH, and no {POSTGRES_LIB}/*/bin has all of initdb, pg_ctl and postgres): install Debian's "
        "'postgresql' package (.ci/run does)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (another worker may take it before the server
    does: ``PostgresServer.start`` tries again then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """One throwaway cluster: ``start()`` makes and starts it, ``stop()`` stops it and removes its folder."""

    bin_dir: Path
    root: Path  # the temp folder: data/, sock/, server.log, the password file
    password: str
    port: int = 0
    started: bool = False
    startup_s: float = 0.0  # initdb to a database that takes connections, seconds

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SERVER_USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    def create(cls) -> PostgresServer:
        bin_dir = find_bin_dir()
        as_root = os.geteuid() == 0
        if as_root:
            try:
                account = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no '{SYSTEM_USER}' system user to run the server as "
                    "(PostgreSQL refuses to run as root): install Debian's 'postgresql' package, which "
                    "creates it, or run the tests as a normal user"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root and 'runuser' (util-linux) is not on PATH")
        # Not pytest's tmp_path: its base folder is private to the user running the tests, which the postgres
        # user could not enter; a short path also keeps the unix socket's path under its 107-byte limit.
        sweep_stale()
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (root / OWNER).write_text(str(os.getpid()))
        (root / "sock").mkdir()
        if as_root:
            for path in (root, root / "sock"):
                os.chown(path, account.pw_uid, account.pw_gid)
        return cls(bin_dir=bin_dir, root=root, password=secrets.token_urlsafe(18))

    def _command(self, name: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / name), *args]
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *command]
        return command

    def _run(self, name: str, *args: str, timeout_s: float = START_TIMEOUT_S) -> None:
        try:
            done = subprocess.run(
                self._command(name, *args),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                cwd=self.root,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PostgresUnavailable(
                f"{name} did not finish in {timeout_s:.0f} s{self.log_tail()}"
            ) from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            raise PostgresUnavailable(
                f"{name} failed (exit status {done.returncode}): {output}{self.log_tail()}"
            )

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\nserver log's tail:\n" + "\n".join(lines[-LOG_TAIL_LINES:]) if lines else ""

    def start(self) -> None:
        began = time.perf_counter()
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            account = pwd.getpwnam(SYSTEM_USER)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        password_file.chmod(0o600)
        try:
            self._run(
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                SERVER_USER,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            )
        finally:
            password_file.unlink(missing_ok=True)
        settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.socket_dir}'"}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tbench test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        for attempt in range(PORT_TRIES):
            self.port = free_port()
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log),
                    "--wait",
                    "--timeout",
                    str(START_TIMEOUT_S),
                    "-o",
                    f"-p {self.port}",
                    timeout_s=START_TIMEOUT_S + 5,
                )
                break
            except PostgresUnavailable:
                # Another process took the port between free_port() and the server's bind: a new port.
                if attempt + 1 == PORT_TRIES or "could not bind" not in self.log_tail():
                    raise
        self.started = True
        self._create_database()
        self.startup_s = time.perf_counter() - began

    def _create_database(self) -> None:
        try:
            import psycopg
        except ImportError as error:
            raise PostgresUnavailable(
                f"psycopg is not installed ({error}): pip install -e '.[store]'"
            ) from None
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SERVER_USER,
            password=self.password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        """Stops the server (fast: aborts open transactions) and removes the folder; never raises, so that it
        can run after any failure."""
        try:
            if self.started:
                self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast", "--wait")
                self.started = False
        except PostgresUnavailable:
            # A server that will not stop must not outlive the session: the postmaster's pid is in its file.
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


PREFIX = "tbench-pg-"
OWNER = "owner.pid"  # the test process that started the server (pg_ctl detaches it from that process)


def sweep_stale() -> list[Path]:
    """Stop and remove the servers of test processes that are gone (killed before their session's end): a
    detached postmaster would otherwise run on, holding its port and memory. The folders removed."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            os.kill(int((root / OWNER).read_text()), 0)
            continue  # its test process runs
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # no owner recorded, or not ours to judge
        pid_file = root / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


def require_server() -> bool:
    return os.environ.get("TBENCH_PG_REQUIRED", "") == "1"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL server for the session (one per xdist worker)."""
    server: PostgresServer | None = None
    try:
        server = PostgresServer.create()
        server.start()
    except PostgresUnavailable as error:
        if server is not None:
            server.stop()
        reason = f"no PostgreSQL server for the test: {error}"
        if require_server():
            pytest.fail(f"{reason} (TBENCH_PG_REQUIRED=1)", pytrace=False)
        pytest.skip(reason)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql+psycopg://tbench:<password>@127.0.0.1:<port>/tbench``: a database of the session's
    throwaway server, empty at the start of the session (tests that need an empty one make their own with
    ``fresh_database``)."""
    return postgres_server.url


def fresh_database(url: str, name: str) -> str:
    """Creates database ``name`` (dropping one of that name first) on the server of ``url``, and returns
    ``url`` pointing at it: a clean store per test without a cluster per test."""
    import sqlalchemy

    if not name.isidentifier():
        raise ValueError(f"database name {name!r} is not a plain identifier: use letters, digits and '_'")
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        engine.dispose()
    return sqlalchemy.make_url(url).set(database=name).render_as_string(hide_password=False)
