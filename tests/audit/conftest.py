"""Fixtures for the audit tests: every store test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is our own throwaway one: initdb as `postgres` into a temp dir, listening on
127.0.0.1 only (free port, unix socket inside the temp dir), stopped by pg_ctl on that data dir at the
end of the session. Missing binaries skip the PostgreSQL half, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.command import run
from controller.errors import CommandError

PG_BIN = Path(os.environ.get("HA_GITOPS_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class PgServer:
    port: int
    password: str

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*argv: str | Path, timeout: float = 60.0) -> None:
    run(["runuser", "-u", "postgres", "--", *[str(a) for a in argv]], timeout=timeout)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        msg = f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    base = Path(tempfile.mkdtemp(prefix="ha-gitops-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data, sock = base / "data", base / "sock"
    sock.mkdir(mode=0o700)
    shutil.chown(sock, "postgres", "postgres")
    password = secrets.token_hex(16)
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    started = False
    try:
        _as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8",
                     "--locale=C", "--auth-host=scram-sha-256", "--auth-local=peer", "--no-sync")
        port = _free_port()
        with (data / "postgresql.conf").open("a") as conf:
            # Loopback only; durability off: this server lives for one test session.
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                       f"unix_socket_directories = '{sock}'\nfsync = off\nfull_page_writes = off\n"
                       "synchronous_commit = off\nmax_connections = 40\nshared_buffers = 32MB\n")
        _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-t", "60", "start",
                     timeout=90)
        started = True
        yield PgServer(port=port, password=password)
    finally:
        if started:
            _stop(data)
        shutil.rmtree(base, ignore_errors=True)


def _stop(data: Path) -> None:
    """pg_ctl stop on our data dir; if that fails, SIGTERM the postmaster PID it recorded (ours)."""
    try:
        _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop", timeout=90)
    except CommandError:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        raise


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty audit database URL: a new SQLite file, or a new database on our server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/audit.db"
    server: PgServer = request.getfixturevalue("pg_server")
    import psycopg

    name = f"audit_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server.url("postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, built from digits
    return server.url(name)
