"""Cluster-wide event ids and gaps in the trail, on real SQLite and PostgreSQL.

Every event has an event_id that is the same in every node's trail (a write's is the marker's event
uuid): the trail holds an id once, `audit show` finds an event by it, and a trail from before schema 0002
gets ids on upgrade and still verifies. `audit verify` reports the writes a trail misses: a recorded gap,
and a write whose predecessor the trail does not hold.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from controller.audit import chain
from controller.audit.migrate import MIGRATIONS_INI
from controller.audit.models import NewEvent
from controller.audit.store import AuditStore, EventNotFound, _columns, _normalise_url
from controller.cli import main
from controller.errors import InputError
from tests.audit.test_audit_store import apply_event


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


def write_event(n: int, event: str, prev: str | None, **details: object) -> NewEvent:
    return apply_event(n, event_id=event, details={"marker_event": event, "marker_prev": prev, **details})


def test_an_event_id_is_held_once(db_url: str) -> None:
    eid = str(uuid.uuid4())
    with AuditStore(db_url) as store:
        first = store.append(apply_event(1, event_id=eid))
        again = store.append(apply_event(2, event_id=eid, summary="the same write, seen by another node"))
        assert again == first and store.count() == 1
        other = store.append(apply_event(3))
        assert other.id == 2 and other.event_id and other.event_id != eid
        assert store.held([eid, other.event_id, str(uuid.uuid4())]) == {eid, other.event_id}
        assert store.verify().ok


def test_an_event_is_found_by_number_or_by_event_id(db_url: str) -> None:
    with AuditStore(db_url) as store:
        a = store.append(apply_event(1, event_id="aaaaaaaa-1111-4000-8000-000000000000"))
        store.append(apply_event(2, event_id="aaaaaaaa-2222-4000-8000-000000000000"))
        assert store.find("1") == a == store.find("aaaaaaaa-1111") == store.find(a.event_id or "")
        with pytest.raises(InputError, match="ambiguous"):
            store.find("aaaaaaaa")
        with pytest.raises(InputError, match="8"):
            store.find("aaaa")
        with pytest.raises(EventNotFound):
            store.find("bbbbbbbb")
        # An event id can start with eight digits: that is the event id, not a row number.
        digits = store.append(apply_event(3, event_id="12345678-3333-4000-8000-000000000000"))
        assert store.find("12345678") == digits and store.find("3") == digits
    shown = json.loads(invoke("audit", "show", "aaaaaaaa-2222", "--db", db_url, "--format", "json").stdout)
    assert shown["id"] == 2 and shown["event_id"] == "aaaaaaaa-2222-4000-8000-000000000000"
    log = invoke("audit", "log", "--db", db_url).stdout
    assert "event" in log.splitlines()[0] and "aaaaaaaa " in log


def _at_0001(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = AlembicConfig(str(MIGRATIONS_INI))
    engine = create_engine(_normalise_url(url))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            alembic_command.upgrade(cfg, "0001")
    finally:
        engine.dispose()


def test_a_trail_from_before_event_ids_gets_them_and_still_verifies(db_url: str) -> None:
    _at_0001(db_url)
    marker_event = str(uuid.uuid4())
    rows = [apply_event(1, details={"marker_event": marker_event}),
            apply_event(2, details={"marker_event": marker_event}),  # the same id twice: only one keeps it
            apply_event(3)]
    engine = create_engine(_normalise_url(db_url))
    prev = "0" * 64
    try:
        with engine.begin() as conn:
            for seq, ev in enumerate(rows, 1):
                cols = {k: v for k, v in _columns(ev).items() if k != "event_id"}
                digest = chain.event_hash(seq, prev, cols, hash_format=1)
                names = ", ".join(["id", *cols, "hash_format", "prev_hash", "hash"])
                values = ", ".join(f":{k}" for k in ["id", *cols, "hash_format", "prev_hash", "hash"])
                conn.execute(text(f"INSERT INTO audit_events ({names}) VALUES ({values})"),
                             {"id": seq, **cols, "hash_format": 1, "prev_hash": prev, "hash": digest})
                prev = digest
            conn.execute(text("UPDATE audit_chain_head SET seq = 3, hash = :h"), {"h": prev})
    finally:
        engine.dispose()
    with AuditStore(db_url) as store:  # opening upgrades to 0002
        assert store.schema_revision() == "0003"
        events = store.list(newest_first=False)
        assert [e.hash_format for e in events] == [1, 1, 1]
        assert events[0].event_id == marker_event
        assert len({e.event_id for e in events}) == 3 and all(e.event_id for e in events)
        new = store.append(apply_event(4))
        assert new.hash_format == 2
        assert store.verify().ok
        # Format 2 covers the event id: changing it is an edit.
    engine = create_engine(_normalise_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET event_id = :e WHERE id = 4"), {"e": str(uuid.uuid4())})
    finally:
        engine.dispose()
    with AuditStore(db_url) as store:
        assert [(p.kind, p.event_id) for p in store.verify().problems] == [("edited", 4)]


def test_verify_reports_a_write_whose_predecessor_the_trail_misses(db_url: str) -> None:
    e = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(6)]
    with AuditStore(db_url) as store:
        store.append(write_event(1, e[1], e[0]))  # the trail's first write: nothing before it to hold
        store.append(write_event(2, e[2], e[1]))
        store.append(write_event(3, e[3], e[2], backfilled=True, source="cib-marker-history"))
        store.append(write_event(5, e[5], e[4]))  # e[4] never recorded: this node missed it
        result = store.verify()
    assert not result.ok and result.backfilled == 1
    assert [(p.kind, p.event_id) for p in result.problems] == [("gap", 4)]
    assert e[4] in result.problems[0].message
    out = invoke("audit", "verify", "--db", db_url)
    assert out.exit_code == 2 and out.stdout.startswith("gap") and "1 problem(s) in 4 events" in out.stdout


def test_verify_reports_a_recorded_gap_with_its_time_range(db_url: str) -> None:
    e = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(40)]
    with AuditStore(db_url) as store:
        store.append(write_event(1, e[1], e[0]))
        # Away from write 2 to 30; back, the history reached to write 11 only.
        gap = store.append(NewEvent(
            node="kamailio03", kind="gap", outcome="failure", summary="writes missing",
            details={"since": "2026-12-02T01:00:01+00:00", "until": "2026-12-02T01:05:00+00:00",
                     "after_event": e[1], "before_event": e[11], "lost_event": e[10],
                     "source": "cib-marker-history"}))
        for i in range(11, 31):
            store.append(write_event(i, e[i], e[i - 1], backfilled=True))
        result = store.verify()
    assert [(p.kind, p.event_id) for p in result.problems] == [("gap", gap.id)]  # the links it explains
    p = result.problems[0]
    assert p.since is not None and p.until is not None and (p.until - p.since).total_seconds() == 299
    assert "between 2026-12-02 01:00:01 and 2026-12-02 01:05:00 UTC" in p.message
    out = invoke("audit", "verify", "--db", db_url, "--format", "json")
    assert out.exit_code == 2
    doc = json.loads(out.stdout)
    assert doc["backfilled"] == 20 and doc["problems"][0]["kind"] == "gap"
    assert doc["problems"][0]["until"].startswith("2026-12-02T01:05:00")


def test_a_complete_trail_verifies_with_its_backfilled_count(db_url: str) -> None:
    e = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(4)]
    with AuditStore(db_url) as store:
        store.append(write_event(1, e[1], None))
        store.append(write_event(2, e[2], e[1], backfilled=True))
        store.append(write_event(3, e[3], e[2]))
    out = invoke("audit", "verify", "--db", db_url)
    assert out.exit_code == 0
    assert "ok: 3 events, 1 backfilled from the CIB marker history, no gap" in out.stdout
