"""The audit store on real SQLite and PostgreSQL: chain, tamper detection, queries, migrations, state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, text

from controller.audit import chain
from controller.audit.models import GENESIS_HASH, AuditEvent, CommitInfo, NewEvent
from controller.audit.store import AuditError, AuditStore, EventNotFound, _normalise_url

SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"


def raw_sql(url: str, *statements: str) -> None:
    """Tamper with the database behind the store's back."""
    engine = create_engine(_normalise_url(url))
    try:
        with engine.begin() as conn:
            for stmt in statements:
                conn.execute(text(stmt))
    finally:
        engine.dispose()


def apply_event(n: int, **kw: object) -> NewEvent:
    fields: dict[str, object] = {
        "node": f"node{n % 3 + 1}", "kind": "apply", "outcome": "success", "summary": f"apply #{n}",
        "commit": {"sha": SHA1 if n % 2 else SHA2, "author": "Ann <ann@example.org>",
                   "message": f"change {n}\n\nbody", "signature": "good"},
        "cib_version_before": f"0.{n}.0", "cib_version_after": f"0.{n + 1}.0",
        "config_before": "<cib/>", "config_after": f"<cib epoch='{n}'/>", "patch": "<diff format='2'/>",
        "diff": {"changes": [{"path": "/x", "old": None, "new": n}]}, "duration": 0.25 * n,
        "details": {"update-origin": "node1", "n": n, "nested": {"ü": [1, 2.5, None]}},
    }
    fields.update(kw)
    return NewEvent.model_validate(fields)


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = AuditStore(db_url)
    yield s
    s.close()


def test_append_builds_a_hash_chain_and_round_trips(store: AuditStore) -> None:
    events = [store.append(apply_event(n)) for n in range(1, 4)]
    assert [e.id for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    assert len({e.hash for e in events}) == 3
    assert store.head() == (3, events[2].hash)

    got = store.get(2)
    assert got == events[1]
    assert got.time.tzinfo is not None and got.time.utcoffset() == timedelta(0)
    assert got.details == {"update-origin": "node1", "n": 2, "nested": {"ü": [1, 2.5, None]}}
    assert got.diff == {"changes": [{"path": "/x", "old": None, "new": 2}]}
    assert got.commit is not None and got.commit.message == "change 2\n\nbody"
    # The stored hash is the hash of what is stored: recompute it independently of the store.
    cols = {k: getattr(got, k) for k in ("time", "node", "kind", "outcome", "summary", "cib_version_before",
                                          "cib_version_after", "config_before", "config_after", "patch",
                                          "corosync_before", "corosync_after", "duration", "error")}
    cols.update(commit_sha=SHA2, commit_author="Ann <ann@example.org>", commit_message="change 2\n\nbody",
                commit_signature="good", diff_json=chain.dump_json(got.diff),
                details_json=chain.dump_json(got.details), event_id=got.event_id)
    assert got.hash_format == 2 and chain.event_hash(2, events[0].hash, cols) == got.hash

    result = store.verify()
    assert result.ok and result.checked == 3 and result.problems == []


def test_event_validation_at_the_boundary() -> None:
    with pytest.raises(ValidationError, match="unknown event kind"):
        NewEvent(node="n1", kind="made-up", outcome="success")
    with pytest.raises(ValidationError, match="timezone-aware"):
        NewEvent(node="n1", kind="apply", outcome="success", time=datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        NewEvent(node="n1", kind="apply", outcome="success", cib_version_after="1.2")
    with pytest.raises(ValidationError, match="JSON"):
        NewEvent(node="n1", kind="apply", outcome="success", details={"x": object()})
    # Later kinds are known; a stored event accepts any well-formed kind (a newer agent wrote it).
    assert NewEvent(node="n1", kind="auto-rollback", outcome="failure").kind == "auto-rollback"
    AuditEvent(node="n", kind="future-kind", outcome="whatever", id=1, prev_hash="0", hash="1")


def test_queries_for_the_agent(store: AuditStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.append(apply_event(1, time=t0))
    store.append(apply_event(2, time=t0 + timedelta(hours=1), outcome="failure"))
    store.append(NewEvent(node="node1", kind="drift-detected", outcome="success",
                          time=t0 + timedelta(hours=2),
                          details={"update-client": "cibadmin", "update-user": "root"}))
    store.append(apply_event(3, kind="rollback", time=t0 + timedelta(hours=3), details={"target_event": 1}))
    store.append(NewEvent(node="node9", kind="refused", outcome="refused", time=t0 + timedelta(hours=4),
                          commit=CommitInfo(sha=SHA2), error="unsigned commit"))

    assert [e.id for e in store.list()] == [5, 4, 3, 2, 1]
    assert [e.id for e in store.list(limit=2)] == [5, 4]
    assert [e.id for e in store.list(kind="apply")] == [2, 1]
    assert [e.id for e in store.list(kind=["apply", "refused"], outcome="success")] == [1]
    assert [e.id for e in store.list(since=t0 + timedelta(hours=2))] == [5, 4, 3]
    assert [e.id for e in store.list(until=t0 + timedelta(hours=1))] == [1]
    assert [e.id for e in store.list(node="node9")] == [5]
    assert [e.id for e in store.events_for_commit(SHA2)] == [2, 5]
    assert [e.id for e in store.events_for_commit(SHA1[:7])] == [1, 4]
    applied = store.last_applied()
    assert applied is not None and applied.id == 4 and applied.details["target_event"] == 1
    last_drift = store.last(kind="drift-detected")
    assert last_drift is not None and last_drift.details["update-client"] == "cibadmin"
    assert store.count() == 5
    with pytest.raises(EventNotFound):
        store.get(99)


def _three(store: AuditStore) -> list[AuditEvent]:
    return [store.append(apply_event(n)) for n in range(1, 4)]


def test_verify_detects_an_edited_row(store: AuditStore, db_url: str) -> None:
    _three(store)
    raw_sql(db_url, "UPDATE audit_events SET config_after = '<cib evil=\"1\"/>' WHERE id = 2")
    result = store.verify()
    assert not result.ok
    assert [(p.kind, p.event_id) for p in result.problems] == [("edited", 2)]


def test_verify_detects_a_rewritten_row_with_recomputed_hash(store: AuditStore, db_url: str) -> None:
    events = _three(store)
    e = events[1]
    cols = {"time": e.time, "node": e.node, "kind": e.kind, "outcome": "failure", "summary": e.summary,
            "commit_sha": SHA2, "commit_author": "Ann <ann@example.org>",
            "commit_message": "change 2\n\nbody",
            "commit_signature": "good", "cib_version_before": e.cib_version_before,
            "cib_version_after": e.cib_version_after, "config_before": e.config_before,
            "config_after": e.config_after, "patch": e.patch, "diff_json": chain.dump_json(e.diff),
            "corosync_before": None, "corosync_after": None, "duration": e.duration, "error": None,
            "details_json": chain.dump_json(e.details), "event_id": e.event_id}
    forged = chain.event_hash(2, e.prev_hash, cols)
    raw_sql(db_url, f"UPDATE audit_events SET outcome = 'failure', hash = '{forged}' WHERE id = 2")
    result = store.verify()
    assert [(p.kind, p.event_id) for p in result.problems] == [("link-broken", 3)]


def test_verify_detects_a_deleted_row(store: AuditStore, db_url: str) -> None:
    _three(store)
    store.append(apply_event(4))
    raw_sql(db_url, "DELETE FROM audit_events WHERE id IN (2, 3)")
    result = store.verify()
    assert [(p.kind, p.event_id, p.last_event_id) for p in result.problems] == [("missing", 2, 3)]
    assert result.checked == 2


def test_verify_detects_a_tampered_hash(store: AuditStore, db_url: str) -> None:
    _three(store)
    raw_sql(db_url, f"UPDATE audit_events SET hash = '{'f' * 64}' WHERE id = 2")
    assert [(p.kind, p.event_id) for p in store.verify().problems] == [("hash-altered", 2)]
    # On the last row the head plays the role of the next link.
    raw_sql(db_url, f"UPDATE audit_events SET hash = '{'e' * 64}' WHERE id = 3")
    assert [(p.kind, p.event_id) for p in store.verify().problems] == [("hash-altered", 2),
                                                                       ("hash-altered", 3)]


def test_verify_detects_a_truncated_tail_and_a_missing_head(store: AuditStore, db_url: str) -> None:
    _three(store)
    raw_sql(db_url, "DELETE FROM audit_events WHERE id = 3")
    result = store.verify()
    assert [(p.kind, p.event_id, p.last_event_id) for p in result.problems] == [("truncated", 3, 3)]
    # Appending after a truncation keeps the evidence: the new event follows the head, not the rows.
    assert store.append(apply_event(9)).id == 4
    assert [p.kind for p in store.verify().problems] == ["missing"]
    raw_sql(db_url, "DELETE FROM audit_chain_head")
    assert "no-head" in [p.kind for p in store.verify().problems]
    with pytest.raises(AuditError, match="chain head is missing"):
        store.append(apply_event(10))


def test_migrations_fresh_and_idempotent(db_url: str) -> None:
    with AuditStore(db_url) as s:
        assert s.schema_revision() == "0003"
        s.append(apply_event(1))
        s.set_state("pinned_revision", SHA1)
    engine = create_engine(_normalise_url(db_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"audit_events", "audit_chain_head", "agent_state", "audit_alembic_version"} <= tables
    with AuditStore(db_url) as s:  # opening again runs `upgrade head` again: a no-op
        s.migrate()
        assert s.schema_revision() == "0003"
        assert s.count() == 1 and s.verify().ok
        assert s.get_state("pinned_revision") == SHA1


def test_agent_state(store: AuditStore) -> None:
    assert store.agent_state().model_dump() == {"pinned_revision": None, "suspended": False,
                                                "bad_revisions": []}
    store.set_pinned_revision(SHA1)
    store.set_suspended(True)
    store.add_bad_revision(SHA2)
    store.add_bad_revision(SHA2)
    store.add_bad_revision(SHA1)
    store.set_suspended(True, scope="node2")
    st = store.agent_state()
    assert st.pinned_revision == SHA1 and st.suspended and st.bad_revisions == [SHA2, SHA1]
    store.remove_bad_revision(SHA2)
    store.delete_state("pinned_revision")
    st = store.agent_state()
    assert st.pinned_revision is None and st.bad_revisions == [SHA1]
    assert store.agent_state(scope="node2").suspended and store.agent_state(scope="node3").suspended is False
    assert store.count() == 0 and store.head()[0] == 0  # state is not in the chain


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "deep" / "dir" / "audit.db"
    with AuditStore(f"sqlite:///{path}") as s:
        s.append(apply_event(1))
        with s._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(AuditError, match="no audit database"):
        AuditStore(f"sqlite:///{tmp_path}/absent.db", create=False)


def test_schema_head_constant_is_alembics_head() -> None:
    # AuditStore skips alembic (in its own process) when the database is at SCHEMA_HEAD: they must agree.
    from controller.audit.migrate import head_revision
    from controller.audit.store import SCHEMA_HEAD

    assert head_revision() == SCHEMA_HEAD
