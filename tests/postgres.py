"""A throwaway PostgreSQL server of the tests' own (Debian's postgresql 15), stopped by its data dir.

initdb as `postgres` into a directory of ours; TCP only on 127.0.0.1 (a free port) and a unix socket in
that directory. With `socket_trust`, local socket connections need no password: for the sandbox agents,
which live in other network namespaces and reach the server only through the socket file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.command import run
from controller.errors import CommandError
from tests.helpers import free_port

PG_BIN = Path(os.environ.get("HA_GITOPS_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class PgServer:
    port: int
    password: str
    socket_dir: Path

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # callers pass names of their own making



def _as_postgres(*argv: str | Path, timeout: float = 60.0) -> None:
    run(["runuser", "-u", "postgres", "--", *[str(a) for a in argv]], timeout=timeout)


def need_postgres() -> None:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        msg = f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@contextmanager
def postgres_server(base: Path, *, socket_trust: bool = False) -> Iterator[PgServer]:
    need_postgres()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    shutil.chown(base, "postgres", "postgres")
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir(mode=0o755 if socket_trust else 0o700)
    shutil.chown(sock, "postgres", "postgres")
    password = secrets.token_hex(16)
    pwfile = base / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    started = False
    try:
        _as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8",
                     "--locale=C", "--auth-host=scram-sha-256",
                     f"--auth-local={'trust' if socket_trust else 'peer'}", "--no-sync")
        port = free_port()
        with (data / "postgresql.conf").open("a") as conf:
            # Loopback only; durability off: this server lives for one test session.
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                       f"unix_socket_directories = '{sock}'\nunix_socket_permissions = 0777\n"
                       "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                       "max_connections = 60\nshared_buffers = 32MB\n")
        _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "-t", "60", "start",
                     timeout=90)
        started = True
        yield PgServer(port=port, password=password, socket_dir=sock)
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
