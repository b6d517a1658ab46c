"""`python -m controller.audit.migrate`: alembic upgrade head for the database in $HA_GITOPS_AUDIT_URL.

AuditStore runs this in a child process, and only when the schema is behind: alembic (and mako) then never
load into the long-running agent, which keeps its memory small. The URL comes through the environment so
a password never shows in the process list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text

from controller.audit import URL_ENV

MIGRATIONS_INI = Path(__file__).parent / "migrations" / "alembic.ini"
PG_LOCK_MIGRATE = 0x6861_0001  # pg_advisory_xact_lock key ("ha" + 1): one migration at a time


def head_revision() -> str | None:
    return ScriptDirectory.from_config(AlembicConfig(str(MIGRATIONS_INI))).get_current_head()


def upgrade(url: str) -> None:
    cfg = AlembicConfig(str(MIGRATIONS_INI))
    engine = create_engine(url)
    is_sqlite = engine.url.get_backend_name() == "sqlite"
    if is_sqlite:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we BEGIN ourselves, below
            dbapi_conn.execute("PRAGMA busy_timeout = 30000")
            dbapi_conn.execute("PRAGMA journal_mode = WAL")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # two migrating processes queue, they do not fail
    try:
        with engine.begin() as conn:
            if not is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_MIGRATE})
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, "head")
    finally:
        engine.dispose()


if __name__ == "__main__":
    upgrade(os.environ[URL_ENV])
    sys.exit(0)
