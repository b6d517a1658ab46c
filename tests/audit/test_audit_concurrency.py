"""Several writer processes on one database, and a writer killed with SIGKILL mid-transaction."""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import event

from controller.audit.models import NewEvent
from controller.audit.store import AuditStore

WRITERS = 4
PER_WRITER = 8
# fork: children start in milliseconds. The parent holds no open store while forking.
CTX = mp.get_context("fork")


def _writer(url: str, node: str, start: Any) -> None:
    store = AuditStore(url)
    start.wait(30)  # all writers race for the same head
    for i in range(PER_WRITER):
        store.append(NewEvent(node=node, kind="apply", outcome="success", summary=f"{node} #{i}",
                              details={"i": i}))
    store.close()


def test_concurrent_appends_keep_one_chain(db_url: str) -> None:
    AuditStore(db_url).close()  # migrate once up front, so the race is about appends
    start = CTX.Event()
    procs = [CTX.Process(target=_writer, args=(db_url, f"node{n}", start)) for n in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    with AuditStore(db_url) as store:
        result = store.verify()
        assert result.ok, result.problems
        events = store.list(limit=None, newest_first=False)
    total = WRITERS * PER_WRITER
    assert result.checked == total and result.head_seq == total
    assert [e.id for e in events] == list(range(1, total + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    # Every writer's events are all there, in its own order.
    for n in range(WRITERS):
        mine = [e.details["i"] for e in events if e.node == f"node{n}"]
        assert mine == list(range(PER_WRITER))


def _append_then_hang(url: str, report: Connection) -> None:
    store = AuditStore(url)

    # Fires inside the append's transaction, after the event row and the head are written, before
    # COMMIT: the point where a crash would leave a half-written event if one transaction were not
    # the whole event.
    @event.listens_for(store._engine, "commit")
    def _hang(conn: Any) -> None:
        seen = conn.exec_driver_sql("SELECT count(*) FROM audit_events").scalar()
        report.send(("in-transaction", seen))
        time.sleep(600)

    store.append(NewEvent(node="doomed", kind="apply", outcome="success", summary="never committed"))


def test_sigkill_mid_append_leaves_no_half_written_event(db_url: str) -> None:
    with AuditStore(db_url) as store:
        for i in range(2):
            store.append(NewEvent(node="node1", kind="apply", outcome="success", details={"i": i}))
        head_before = store.head()

    parent_end, child_end = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_append_then_hang, args=(db_url, child_end))
    proc.start()
    try:
        assert parent_end.poll(30), "the writer never reached its commit"
        assert parent_end.recv() == ("in-transaction", 3)  # the row exists inside its transaction
    finally:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL

    with AuditStore(db_url) as store:
        assert store.head() == head_before
        assert store.count() == 2
        assert store.verify().ok
        # The lock died with the process: the next append goes through, right after the head.
        nxt = store.append(NewEvent(node="node2", kind="apply", outcome="success"))
        assert nxt.id == 3 and nxt.prev_hash == head_before[1]
        assert store.verify().ok
        assert [e.node for e in store.list()] == ["node2", "node1", "node1"]
