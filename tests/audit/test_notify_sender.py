"""The sender against a real HTTP receiver on loopback (Apprise's generic JSON webhook, json://): each
queued event arrives once; one queued while the receiver is down arrives after it comes back; a receiver
that never answers costs one timeout, not a hang."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from controller.audit.models import NewEvent
from controller.audit.store import AuditStore
from controller.notifications import NotifyTarget
from controller.notify_send import Sender
from tests.notify_receiver import Receiver


def _event(n: int) -> NewEvent:
    return NewEvent(event_id=f"0b5e3c4a-0000-4000-8000-{n:012d}", node="n1", kind="drift-detected",
                    outcome="success", summary=f"drift number {n}")


def _sender(store: AuditStore, url: str, **kw: float) -> tuple[Sender, NotifyTarget]:
    target = NotifyTarget.model_validate({"name": "ops", "url": url, "retry_initial": 0.2, "retry_max": 0.4,
                                          **kw})
    return Sender(store, [target], node="n1", cluster="kamailio", rng=lambda: 0.0), target


def test_each_event_arrives_once_and_one_made_while_down_arrives_later(tmp_path: Path,
                                                                       receiver: Receiver) -> None:
    with AuditStore(f"sqlite:///{tmp_path}/audit.db") as store:
        sender, _ = _sender(store, f"json://user:hunter2secret@127.0.0.1:{receiver.port}/hook", timeout=3)
        store.append(_event(1), notify=["ops"])
        assert sender.run_once() == 1
        assert sender.run_once() == 0
        got = receiver.messages()
        assert len(got) == 1
        assert got[0]["title"] == "ha-gitops kamailio: drift-detected"
        assert got[0]["message"].startswith("drift number 1") and got[0]["type"] == "warning"
        assert got[0]["_path"] == "/hook"

        receiver.stop()
        store.append(_event(2), notify=["ops"])
        assert sender.run_once() == 0  # refused: nothing listens
        summary = store.outbox_summary({"ops"})
        assert summary["pending"] == 1 and summary["sent"] == 1
        assert summary["oldest_failure"]["last_error"] and "hunter2secret" not in str(summary)

        receiver.start()
        deadline = time.monotonic() + 10
        while store.outbox_summary({"ops"})["sent"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            sender.run_once()
        assert [g["message"].splitlines()[0] for g in receiver.messages()] == ["drift number 1",
                                                                                "drift number 2"]
        assert store.notifications(event_id=_event(2).event_id)[0].attempts == 2


def test_the_thread_delivers_as_soon_as_an_event_is_queued(tmp_path: Path, receiver: Receiver) -> None:
    store = AuditStore(f"sqlite:///{tmp_path}/audit.db")
    sender, _ = _sender(AuditStore(f"sqlite:///{tmp_path}/audit.db"), f"json://127.0.0.1:{receiver.port}/x")
    store.on_outbox = sender.wake
    sender.start()
    try:
        time.sleep(0.3)  # the sender is idle, waiting
        t0 = time.monotonic()
        store.append(_event(3), notify=["ops"])
        while not receiver.messages() and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert len(receiver.messages()) == 1  # within 10 s: woken by the append, not the 30 s idle wait
    finally:
        sender.stop()
        store.close()


def test_a_receiver_that_never_answers_is_tried_once_a_round(tmp_path: Path) -> None:
    """Three events queued for a receiver that accepts connections and never answers: one round of the
    sender makes one attempt (one read timeout), not one per event, and all three are retried later."""
    connections: list[socket.socket] = []
    with socket.socket() as silent, AuditStore(f"sqlite:///{tmp_path}/audit.db") as store:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        def accept() -> None:  # counts the connections, never answers one
            while True:
                try:
                    connections.append(silent.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        sender, _ = _sender(store, f"json://127.0.0.1:{port}/hook", timeout=1)
        for n in (4, 5, 6):
            store.append(_event(n), notify=["ops"])
        assert sender.run_once() == 0
        assert len(connections) == 1
        items = store.notifications()
        assert len(items) == 3 and all(i.state == "pending" and i.last_error for i in items)
        assert len({i.last_error for i in items}) == 1
        silent.close()
        for c in connections:
            c.close()
