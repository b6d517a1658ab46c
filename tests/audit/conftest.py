"""Fixtures for the audit tests: every store test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is our own throwaway one: initdb as `postgres` into a temp dir, listening on
127.0.0.1 only (free port, unix socket inside the temp dir), stopped by pg_ctl on that data dir at the
end of the session. Missing binaries skip the PostgreSQL half, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PgServer, postgres_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    base = Path(tempfile.mkdtemp(prefix="ha-gitops-pg-"))
    with postgres_server(base) as server:
        yield server


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty audit database URL: a new SQLite file, or a new database on our server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/audit.db"
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"audit_{os.getpid()}_{next(_db_counter)}"  # ours, built from digits
    server.create_database(name)
    return server.url(name)
