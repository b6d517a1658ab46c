"""The notification outbox in the audit database (SQLite and a real PostgreSQL): rows added in the event's
transaction, one per event and target however many agents record the event, claimed by one sender at a
time, retried, and summarised for `status`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from controller.audit.models import NewEvent
from controller.audit.store import AuditStore

T0 = datetime.now(UTC)  # rows are queued due at the real now; the tests look later than that


def _event(event_id: str = "0b5e3c4a-1111-4222-8333-444455556666", node: str = "n1") -> NewEvent:
    return NewEvent(event_id=event_id, node=node, kind="drift-detected", outcome="success", summary="drift")


def test_append_queues_one_row_per_target_in_the_event_transaction(db_url: str) -> None:
    with AuditStore(db_url) as store:
        woken: list[bool] = []
        store.on_outbox = lambda: woken.append(True)
        ev = store.append(_event(), notify=["ops", "pager"])
        rows = store.notifications(event_id=ev.event_id)
        assert sorted(r.target for r in rows) == ["ops", "pager"]
        assert {r.state for r in rows} == {"pending"} and woken == [True]
        store.append(_event())  # an event without targets (an observer's copy) queues nothing
        assert store.append(_event("0b5e3c4a-2222-4222-8333-444455556666")).id == ev.id + 1
        assert len(store.notifications()) == 2


def test_two_agents_recording_one_event_queue_it_once(db_url: str) -> None:
    """A shared trail: the writer and an observer (or two writers across a takeover) record the same
    event id; one row per target. An observer's copy first, then the writer's: the writer's queues."""
    with AuditStore(db_url) as a, AuditStore(db_url) as b:
        first = a.append(_event(node="n2"))  # the observer's copy: no targets
        again = b.append(_event(node="n1"), notify=["ops"])
        assert again.id == first.id
        b.append(_event(node="n1"), notify=["ops"])
        a.append(_event(node="n1"), notify=["ops", "pager"])
        assert sorted(r.target for r in a.notifications()) == ["ops", "pager"]


def test_concurrent_writers_of_one_event_make_one_row(db_url: str) -> None:
    AuditStore(db_url).close()
    stores = [AuditStore(db_url) for _ in range(4)]
    start = threading.Barrier(len(stores))

    def record(store: AuditStore) -> None:
        start.wait()
        store.append(_event(), notify=["ops"])

    threads = [threading.Thread(target=record, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert [r.target for r in stores[0].notifications()] == ["ops"]
    finally:
        for s in stores:
            s.close()


def test_a_claimed_row_is_one_senders_until_its_lease_ends(db_url: str) -> None:
    with AuditStore(db_url) as a, AuditStore(db_url) as b:
        a.append(_event(), notify=["ops"])
        claimed = a.claim_notifications({"ops"}, now=T0 + timedelta(days=1), lease=60)
        assert [c.attempts for c in claimed] == [1]
        assert b.claim_notifications({"ops"}, now=T0 + timedelta(days=1, seconds=30), lease=60) == []
        # The first sender died mid-delivery: once the lease ends the row is due again.
        again = b.claim_notifications({"ops"}, now=T0 + timedelta(days=1, seconds=61), lease=60)
        assert [c.attempts for c in again] == [2]
        assert a.claim_notifications({"pager"}, now=T0 + timedelta(days=2), lease=60) == []


def test_failures_are_retried_then_sent_and_summarised(db_url: str) -> None:
    with AuditStore(db_url) as store:
        store.append(_event(), notify=["ops"])
        now = T0 + timedelta(days=1)
        item = store.claim_notifications({"ops"}, now=now, lease=60)[0]
        store.notification_failed(item.id, error="connection refused", retry_at=now + timedelta(seconds=5),
                                  state="failing")
        summary = store.outbox_summary({"ops"})
        assert (summary["pending"], summary["failing"], summary["sent"]) == (0, 1, 0)
        assert summary["oldest_failure"]["last_error"] == "connection refused"
        assert store.next_notification_due({"ops"}) == now + timedelta(seconds=5)
        assert store.claim_notifications({"ops"}, now=now + timedelta(seconds=4), lease=60) == []
        item = store.claim_notifications({"ops"}, now=now + timedelta(seconds=5), lease=60)[0]
        store.notification_sent(item.id, node="n1", now=now + timedelta(seconds=6))
        summary = store.outbox_summary({"ops"})
        assert (summary["pending"], summary["failing"], summary["sent"]) == (0, 0, 1)
        assert summary["oldest_failure"] is None
        assert store.next_notification_due({"ops"}) is None
        store.append(_event("0b5e3c4a-3333-4222-8333-444455556666"), notify=["removed"])
        assert store.outbox_summary({"ops"})["unconfigured"] == 1
        assert store.outbox_summary({"ops", "removed"})["pending"] == 1
        assert store.prune_notifications(now) == 0
        assert store.prune_notifications(now + timedelta(days=40)) == 1
