"""The audit store refusing writes is an incident, not a crash or a loss (issue 10, item 5).

A real SQLite trail made unwritable the way a broken disk makes it (its files immutable: every write
fails with an I/O error): nothing is written to the CIB that cannot be recorded, and an event the store
refused after a write is kept, whole, and appended once the store works again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.audit.store import AuditError, AuditStore
from controller.cluster.adapter import LiveCluster
from controller.reconcile import PassFailed, Reconciler
from tests.conftest import need_root


@pytest.fixture
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditStore, Path]]:
    need_root()  # chattr
    # chattr needs a real file system (not the tmpfs /tmp may be)
    base = Path("/var/tmp") / tmp_path_factory.mktemp("audit-failure").name
    base.mkdir(parents=True, exist_ok=True)
    db = base / "audit.db"
    store = AuditStore(f"sqlite:///{db}")
    store.probe()  # creates the write-ahead log the test then freezes
    yield store, db
    unfreeze(db)
    store.close()
    subprocess.run(["rm", "-rf", str(base)], check=True, timeout=30)


def freeze(db: Path) -> None:
    subprocess.run(["chattr", "+i", str(db), f"{db}-wal"], check=True, timeout=30)


def unfreeze(db: Path) -> None:
    subprocess.run(["chattr", "-i", str(db), f"{db}-wal"], check=False, timeout=30)


def test_the_probe_says_when_the_store_refuses_writes(trail: tuple[AuditStore, Path]) -> None:
    store, db = trail
    freeze(db)
    with pytest.raises(AuditError, match="audit database: writing agent state"):
        store.probe()
    unfreeze(db)
    store.probe()


def test_no_cib_write_without_a_trail_and_nothing_lost_after_one(trail: tuple[AuditStore, Path]) -> None:
    store, db = trail
    rec = Reconciler(node="kamailio01", cluster=LiveCluster(), store=store)
    first = rec._record(node="kamailio01", kind="apply", outcome="success", summary="before the fault")
    assert first == 1
    freeze(db)
    # The executor asks first: a pass that would write the CIB stops here, naming why.
    with pytest.raises(PassFailed) as refused:
        rec._store_ready(None)
    assert refused.value.failure.reason == "AuditStoreFailed" and refused.value.failure.stage == "record"
    assert "nothing is written to the CIB until it can" in str(refused.value)
    # A write that already happened is recorded later, whole: kept, not dropped.
    assert rec._record(node="kamailio01", kind="apply", outcome="success", summary="the write",
                       config_before="<configuration/>", config_after="<configuration><x/></configuration>",
                       patch="<diff/>") == 0
    assert rec._record(node="kamailio01", kind="verify", outcome="success", summary="its verify") == 0
    unfreeze(db)
    rec._store_ready(None)  # appends what waited, in order
    events = store.list(limit=10)
    assert [e.summary for e in reversed(events)] == ["before the fault", "the write", "its verify"]
    write = next(e for e in events if e.summary == "the write")
    assert write.config_before == "<configuration/>" and write.patch == "<diff/>"  # rollback still works
    assert store.verify().ok
