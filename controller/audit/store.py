"""The audit store: opens (and migrates) the database, appends events to the hash chain, reads, verifies.

SQLite (default, WAL, one file per node) or PostgreSQL (several agents sharing one trail). Appends are
serialised so the chain never forks: SQLite takes the write lock at BEGIN IMMEDIATE; PostgreSQL locks
the chain-head row (SELECT ... FOR UPDATE). One event is one transaction, so a crash leaves either the
whole event (and the moved head) or nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, delete, event, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from controller.audit import DEFAULT_URL, URL_ENV, chain
from controller.audit.models import (
    GENESIS_HASH,
    AgentState,
    AuditEvent,
    CommitInfo,
    EventKind,
    NewEvent,
    OutboxItem,
    Outcome,
    Problem,
    VerifyResult,
    now_utc,
)
from controller.audit.orm import CHAIN_NAME, AgentStateRow, ChainHeadRow, EventRow, OutboxRow
from controller.errors import HaGitopsError, InputError

# The newest migration's revision (tests check it is alembic's head): a database at it needs no alembic.
SCHEMA_HEAD = "0003"
# Events whose config_after is what the cluster ran afterwards: the candidates for a rollback target.
APPLYING_KINDS = (EventKind.APPLY, EventKind.DRIFT_CORRECTED, EventKind.ROLLBACK, EventKind.AUTO_ROLLBACK)
CLUSTER_SCOPE = "cluster"
_PG_LOCK_STATE = 0x6861_0002


class AuditError(HaGitopsError):
    """The audit database cannot be opened, read or written."""


class EventNotFound(AuditError):
    pass


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else $HA_GITOPS_AUDIT_URL, else the default SQLite file."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _normalise_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise InputError(f"not a database URL: {raw!r}") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3, not the default psycopg2
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InputError(f"unsupported audit database {backend!r}: use sqlite:/// or postgresql://")
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise InputError("the audit database must be a file (sqlite:////path/audit.db)")
    return url


@contextlib.contextmanager
def _db_errors(what: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        # The two ways a working trail stops taking writes, said plainly (sqlite's words, PostgreSQL's).
        if "disk is full" in detail or "No space left" in detail:
            detail = f"the disk holding the audit database is full ({detail})"
        elif "readonly database" in detail or "read-only" in detail:
            detail = f"the audit database is read-only ({detail})"
        raise AuditError(f"audit database: {what}: {detail}") from exc


def _columns(ev: NewEvent) -> dict[str, Any]:
    """Event -> column values, exactly what is stored and hashed."""
    c = ev.commit
    return {
        "time": ev.time, "node": ev.node, "kind": ev.kind, "outcome": ev.outcome, "summary": ev.summary,
        "commit_sha": c.sha if c else None, "commit_author": c.author if c else None,
        "commit_message": c.message if c else None, "commit_signature": c.signature if c else None,
        "cib_version_before": ev.cib_version_before, "cib_version_after": ev.cib_version_after,
        "config_before": ev.config_before, "config_after": ev.config_after, "patch": ev.patch,
        "diff_json": None if ev.diff is None else chain.dump_json(ev.diff),
        "corosync_before": ev.corosync_before, "corosync_after": ev.corosync_after,
        "duration": None if ev.duration is None else float(ev.duration), "error": ev.error,
        "details_json": chain.dump_json(ev.details), "event_id": ev.event_id,
    }


def _to_event(m: Any) -> AuditEvent:
    """A row (ORM object or Core mapping) -> AuditEvent."""
    g = (lambda k: m[k]) if hasattr(m, "keys") else (lambda k: getattr(m, k))
    try:
        commit = None
        if g("commit_sha"):
            commit = CommitInfo(sha=g("commit_sha"), author=g("commit_author"), message=g("commit_message"),
                                signature=g("commit_signature") or "not-checked")
        return AuditEvent(
            id=g("id"), event_id=g("event_id"), prev_hash=g("prev_hash"), hash=g("hash"),
            hash_format=g("hash_format"),
            time=g("time"), node=g("node"), kind=g("kind"), outcome=g("outcome"), summary=g("summary"),
            commit=commit, cib_version_before=g("cib_version_before"),
            cib_version_after=g("cib_version_after"), config_before=g("config_before"),
            config_after=g("config_after"), patch=g("patch"),
            diff=None if g("diff_json") is None else json.loads(g("diff_json")),
            corosync_before=g("corosync_before"), corosync_after=g("corosync_after"),
            duration=g("duration"), error=g("error"), details=json.loads(g("details_json")),
        )
    except (ValidationError, ValueError) as exc:
        raise AuditError(f"audit event {g('id')} is unreadable (tampered? run `ha-gitops audit verify`): "
                         f"{exc}") from exc


class AuditStore:
    """The audit trail in one database. Open once per process; not to be shared across fork()."""

    def __init__(self, url: str | None = None, *, create: bool = True, busy_timeout: float = 30.0) -> None:
        self.url = _normalise_url(resolve_url(url))
        self.display_url = self.url.render_as_string(hide_password=True)
        self._sqlite = self.url.get_backend_name() == "sqlite"
        if self._sqlite:
            self._prepare_sqlite_file(create)
            self._engine = create_engine(self.url, connect_args={"timeout": busy_timeout})
            self._install_sqlite_hooks(self._engine, busy_timeout)
        else:
            self._engine = create_engine(self.url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        # Connections from this engine begin write transactions (SQLite: BEGIN IMMEDIATE).
        self._writer = self._engine.execution_options(ha_write=True)
        # Called after an append that queued notifications (the agent wakes its sender).
        self.on_outbox: Callable[[], None] | None = None
        try:
            self.migrate()
        except BaseException:
            self._engine.dispose()
            raise

    # ---- opening

    def _prepare_sqlite_file(self, create: bool) -> None:
        path = Path(str(self.url.database))
        if path.exists():
            return
        if not create:
            raise AuditError(f"no audit database at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 up front: it holds real configurations, secrets included.
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise AuditError(f"cannot create audit database {path}: {exc.strerror}") from exc

    @staticmethod
    def _install_sqlite_hooks(engine: Engine, busy_timeout: float) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own; we do, below
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous = FULL")  # a committed event survives a power cut
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock now, so two writers queue instead of failing on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ha_write")
                                 else "BEGIN")

    def migrate(self) -> None:
        """alembic upgrade head, unless the schema is already there.

        The upgrade runs in a child process (controller.audit.migrate), serialised between processes
        that open the database together, so alembic never loads into a long-running agent."""
        try:
            current = self.schema_revision()
        except AuditError:
            current = None  # a fresh database: no version table yet
        if current == SCHEMA_HEAD:
            return
        from controller.command import run
        from controller.errors import CommandError

        try:
            run([sys.executable, "-m", "controller.audit.migrate"], timeout=300,
                env={URL_ENV: self.url.render_as_string(hide_password=False)})
        except CommandError as exc:
            raise AuditError(f"migrating {self.display_url}: {exc.stderr.strip()[-2000:] or exc}") from exc

    def schema_revision(self) -> str | None:
        with _db_errors("reading schema revision"), self._engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM audit_alembic_version")).scalar()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing

    def append(self, new: NewEvent | dict[str, Any], *, notify: Sequence[str] = ()) -> AuditEvent:
        """Add one event at the end of the chain, in one transaction; returns it with id and hash.

        An event whose event_id the trail holds already is not added again: the stored one is returned
        (two agents of a shared trail, or a backfill, recording the same write).

        `notify`: the `[[notify]]` targets (keys) to tell, queued in the outbox in the same transaction,
        once per event and target (an event held already is queued too: in a shared trail an observer's
        copy may have come first)."""
        ev = new if isinstance(new, NewEvent) else NewEvent.model_validate(new)
        cols = _columns(ev)
        queued = 0
        with _db_errors("appending an event"), Session(self._writer, expire_on_commit=False) as s, s.begin():
            head = s.execute(select(ChainHeadRow).where(ChainHeadRow.name == CHAIN_NAME)
                             .with_for_update()).scalar_one_or_none()
            if head is None:
                raise AuditError("audit chain head is missing: the trail was tampered with "
                                 "(run `ha-gitops audit verify`)")
            # Under the head lock: no other append can add the same id between this look and the insert.
            held = s.execute(select(EventRow).where(EventRow.event_id == ev.event_id)).scalar_one_or_none()
            if held is None:
                seq = head.seq + 1
                digest = chain.event_hash(seq, head.hash, cols)
                held = EventRow(id=seq, prev_hash=head.hash, hash=digest, hash_format=chain.HASH_FORMAT,
                                **cols)
                s.add(held)
                head.seq, head.hash = seq, digest
            if notify:
                queued = self._enqueue(s, ev.event_id, notify)
        if queued and self.on_outbox is not None:
            self.on_outbox()
        return _to_event(held)

    # ---- the notification outbox

    @staticmethod
    def _enqueue(s: Session, event_id: str, targets: Sequence[str]) -> int:
        """Outbox rows for the targets that have none for this event yet (the caller holds the head lock,
        so two agents of a shared trail cannot both add one; the UNIQUE index would refuse it anyway)."""
        have = set(s.execute(select(OutboxRow.target).where(OutboxRow.event_id == event_id)).scalars())
        now = now_utc()
        added = 0
        for target in dict.fromkeys(targets):
            if target not in have:
                s.add(OutboxRow(event_id=event_id, target=target, state="pending", attempts=0,
                                next_attempt_at=now, created=now))
                added += 1
        return added

    def claim_notifications(self, targets: Collection[str], *, now: datetime, lease: float,
                            limit: int = 20) -> list[OutboxItem]:
        """The due rows for these targets, oldest first, each claimed for `lease` seconds (its next try
        moved that far on, its attempt counted): another sender of a shared trail skips them meanwhile,
        and a sender killed mid-delivery leaves them due again once the lease ends."""
        if not targets:
            return []
        with _db_errors("claiming notifications"), Session(self._writer, expire_on_commit=False) as s, \
                s.begin():
            q = (select(OutboxRow).where(OutboxRow.state != "sent", OutboxRow.next_attempt_at <= now,
                                         OutboxRow.target.in_(sorted(targets)))
                 .order_by(OutboxRow.id).limit(limit))
            if not self._sqlite:  # SQLite's BEGIN IMMEDIATE already serialises
                q = q.with_for_update(skip_locked=True)
            rows = list(s.execute(q).scalars())
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=lease)
            return [_outbox_item(r) for r in rows]

    def notification_sent(self, row_id: int, *, node: str, now: datetime) -> None:
        with _db_errors("recording a notification sent"), Session(self._writer) as s, s.begin():
            row = s.get(OutboxRow, row_id)
            if row is not None:
                row.state, row.sent_at, row.sent_by, row.last_error = "sent", now, node, None

    def notification_failed(self, row_id: int, *, error: str, retry_at: datetime, state: str) -> None:
        with _db_errors("recording a failed notification"), Session(self._writer) as s, s.begin():
            row = s.get(OutboxRow, row_id)
            if row is not None and row.state != "sent":
                row.state, row.last_error, row.next_attempt_at = state, error[:2000], retry_at

    def next_notification_due(self, targets: Collection[str]) -> datetime | None:
        if not targets:
            return None
        with _db_errors("reading the notification outbox"), Session(self._engine) as s:
            return s.execute(select(func.min(OutboxRow.next_attempt_at)).where(
                OutboxRow.state != "sent", OutboxRow.target.in_(sorted(targets)))).scalar()

    def notifications(self, *, event_id: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Outbox rows, newest first (all of one event's with event_id)."""
        q = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if event_id is not None:
            q = q.where(OutboxRow.event_id == event_id)
        with _db_errors("reading the notification outbox"), Session(self._engine) as s:
            return [_outbox_item(r) for r in s.execute(q).scalars()]

    def outbox_summary(self, targets: Collection[str]) -> dict[str, Any]:
        """What `status` shows: the rows of these targets by state, the oldest undelivered one that has
        failed, and how many undelivered rows are for targets not configured here (`unconfigured`: a
        target since removed, or one only other agents of a shared trail have; they are left as they are)."""
        keys = sorted(targets)
        with _db_errors("reading the notification outbox"), Session(self._engine) as s:
            counts = dict(s.execute(select(OutboxRow.state, func.count()).where(OutboxRow.target.in_(keys))
                                    .group_by(OutboxRow.state)).all())
            other = s.execute(select(func.count()).select_from(OutboxRow).where(
                OutboxRow.state != "sent", OutboxRow.target.not_in(keys))).scalar()
            oldest = s.execute(select(OutboxRow).where(OutboxRow.state != "sent", OutboxRow.target.in_(keys),
                                                       OutboxRow.last_error.is_not(None))
                               .order_by(OutboxRow.id).limit(1)).scalar_one_or_none()
            failure = None if oldest is None else _outbox_item(oldest).model_dump(mode="json")
            return {"pending": int(counts.get("pending", 0)), "failing": int(counts.get("failing", 0)),
                    "sent": int(counts.get("sent", 0)), "unconfigured": int(other or 0),
                    "oldest_failure": failure}

    def prune_notifications(self, before: datetime) -> int:
        """Forget rows delivered before `before` (the event itself stays in the trail)."""
        with _db_errors("pruning the notification outbox"), Session(self._writer) as s, s.begin():
            done = s.execute(delete(OutboxRow).where(OutboxRow.state == "sent", OutboxRow.sent_at < before))
            return int(getattr(done, "rowcount", 0) or 0)

    def probe(self) -> None:
        """A write transaction that changes nothing the trail shows: raises AuditError (naming a full disk
        or a read-only file as such) when the store would refuse the next event."""
        self.set_state("write-probe", datetime.now(UTC).isoformat(timespec="seconds"), scope="_probe")

    # ---- reading

    def held(self, event_ids: Iterable[str]) -> set[str]:
        """Which of these cluster-wide event ids the trail holds."""
        wanted = sorted(set(event_ids))
        if not wanted:
            return set()
        with _db_errors("looking up event ids"), Session(self._engine) as s:
            found = s.execute(select(EventRow.event_id).where(EventRow.event_id.in_(wanted))).scalars()
            return {e for e in found if e}

    def by_event_id(self, event_id: str) -> AuditEvent | None:
        with _db_errors(f"reading event {event_id}"), Session(self._engine) as s:
            row = s.execute(select(EventRow).where(EventRow.event_id == event_id)).scalar_one_or_none()
            return None if row is None else _to_event(row)

    def find(self, ref: str | int) -> AuditEvent:
        """An event by its number in this trail, or by its cluster-wide event id (or a prefix of 8+)."""
        if isinstance(ref, int) or (ref.isdigit() and len(ref) < 8):
            return self.get(int(ref))
        ref = ref.lower()
        if ref.isdigit():
            # 8+ digits: an event id's first characters can all be digits (a number that large is not
            # likely in one trail); the number only when no event id starts so.
            try:
                return self._by_prefix(ref)
            except EventNotFound:
                return self.get(int(ref))
        return self._by_prefix(ref)

    def _by_prefix(self, ref: str) -> AuditEvent:
        if len(ref) < 8:
            raise InputError(f"not an event number or event id (8+ characters): {ref!r}")
        with _db_errors(f"reading event {ref}"), Session(self._engine) as s:
            rows = s.execute(select(EventRow).where(EventRow.event_id.startswith(ref, autoescape=True))
                             .limit(2)).scalars().all()
        if not rows:
            raise EventNotFound(f"no audit event {ref}")
        if len(rows) > 1:
            raise InputError(f"event id prefix {ref!r} is ambiguous: give more of it")
        return _to_event(rows[0])

    def get(self, event_id: int) -> AuditEvent:
        with _db_errors(f"reading event {event_id}"), Session(self._engine) as s:
            row = s.get(EventRow, event_id)
            if row is None:
                raise EventNotFound(f"no audit event {event_id}")
            return _to_event(row)

    def list(self, *, limit: int | None = 50, kind: str | Iterable[str] | None = None,
             outcome: str | Iterable[str] | None = None, node: str | None = None,
             commit: str | None = None, since: datetime | None = None, until: datetime | None = None,
             before_id: int | None = None, newest_first: bool = True) -> list[AuditEvent]:
        """Events matching every filter given; newest first by default. commit: a sha or its prefix."""
        q = select(EventRow)
        if kind is not None:
            q = q.where(EventRow.kind.in_([kind] if isinstance(kind, str) else sorted(kind)))
        if outcome is not None:
            q = q.where(EventRow.outcome.in_([outcome] if isinstance(outcome, str) else sorted(outcome)))
        if node is not None:
            q = q.where(EventRow.node == node)
        if commit is not None:
            sha = commit.lower()
            if not (7 <= len(sha) <= 64 and all(ch in "0123456789abcdef" for ch in sha)):
                raise InputError(f"not a commit sha (7-64 hex digits): {commit!r}")
            q = q.where(EventRow.commit_sha == sha if len(sha) == 40 or len(sha) == 64
                        else EventRow.commit_sha.startswith(sha, autoescape=True))
        if since is not None:
            q = q.where(EventRow.time >= since)
        if until is not None:
            q = q.where(EventRow.time < until)
        if before_id is not None:
            q = q.where(EventRow.id < before_id)
        q = q.order_by(EventRow.id.desc() if newest_first else EventRow.id.asc())
        if limit is not None:
            q = q.limit(limit)
        with _db_errors("listing events"), Session(self._engine) as s:
            return [_to_event(r) for r in s.execute(q).scalars()]

    def last(self, *, kind: str | Iterable[str] | None = None, outcome: str | Iterable[str] | None = None,
             node: str | None = None) -> AuditEvent | None:
        found = self.list(limit=1, kind=kind, outcome=outcome, node=node)
        return found[0] if found else None

    def last_applied(self, *, node: str | None = None) -> AuditEvent | None:
        """The newest successful event that put a whole configuration in place (apply, drift-corrected,
        rollback, auto-rollback): its config_after/corosync_after is the last known-good state."""
        return self.last(kind=[k.value for k in APPLYING_KINDS], outcome=Outcome.SUCCESS.value, node=node)

    def events_for_commit(self, sha: str) -> builtins.list[AuditEvent]:
        """Every event about a commit (full sha or a prefix of 7+), oldest first."""
        return self.list(limit=None, commit=sha, newest_first=False)

    def head(self) -> tuple[int, str]:
        """(number of events appended, hash of the last one)."""
        with _db_errors("reading chain head"), Session(self._engine) as s:
            h = s.get(ChainHeadRow, CHAIN_NAME)
            if h is None:
                raise AuditError("audit chain head is missing (run `ha-gitops audit verify`)")
            return h.seq, h.hash

    def count(self) -> int:
        with _db_errors("counting events"), Session(self._engine) as s:
            return int(s.execute(select(func.count()).select_from(EventRow)).scalar_one())

    # ---- verifying

    def verify(self) -> VerifyResult:
        """Walk the whole chain in one consistent snapshot and report every problem by event id."""
        engine = self._engine if self._sqlite else self._engine.execution_options(
            isolation_level="REPEATABLE READ")
        with _db_errors("verifying"), engine.connect() as conn, conn.begin():
            head = conn.execute(select(ChainHeadRow.seq, ChainHeadRow.hash)
                                .where(ChainHeadRow.name == CHAIN_NAME)).one_or_none()
            rows = conn.execution_options(stream_results=True, yield_per=200).execute(
                select(EventRow.__table__).order_by(EventRow.id))
            return _walk(rows.mappings(), None if head is None else (int(head[0]), str(head[1])))

    # ---- agent state (key/value, JSON values; not part of the chain)

    @contextlib.contextmanager
    def _state_session(self) -> Iterator[Session]:
        with _db_errors("writing agent state"), Session(self._writer) as s, s.begin():
            if not self._sqlite:  # SQLite's BEGIN IMMEDIATE already serialises
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_STATE})
            yield s

    def get_state(self, key: str, default: Any = None, *, scope: str = CLUSTER_SCOPE) -> Any:
        with _db_errors("reading agent state"), Session(self._engine) as s:
            row = s.get(AgentStateRow, (scope, key))
            return default if row is None else json.loads(row.value_json)

    def set_state(self, key: str, value: Any, *, scope: str = CLUSTER_SCOPE) -> None:
        with self._state_session() as s:
            self._put(s, scope, key, value)

    def delete_state(self, key: str, *, scope: str = CLUSTER_SCOPE) -> None:
        with self._state_session() as s:
            s.execute(delete(AgentStateRow).where(AgentStateRow.scope == scope, AgentStateRow.key == key))

    @staticmethod
    def _put(s: Session, scope: str, key: str, value: Any) -> None:
        row = s.get(AgentStateRow, (scope, key))
        now = now_utc()
        if row is None:
            s.add(AgentStateRow(scope=scope, key=key, value_json=chain.dump_json(value), updated=now))
        else:
            row.value_json, row.updated = chain.dump_json(value), now

    def agent_state(self, *, scope: str = CLUSTER_SCOPE) -> AgentState:
        return AgentState(pinned_revision=self.get_state("pinned_revision", scope=scope),
                          suspended=bool(self.get_state("suspended", False, scope=scope)),
                          bad_revisions=list(self.get_state("bad_revisions", [], scope=scope)))

    def set_pinned_revision(self, sha: str | None, *, scope: str = CLUSTER_SCOPE) -> None:
        self.set_state("pinned_revision", sha, scope=scope)

    def set_suspended(self, suspended: bool, *, scope: str = CLUSTER_SCOPE) -> None:
        self.set_state("suspended", bool(suspended), scope=scope)

    def add_bad_revision(self, sha: str, *, scope: str = CLUSTER_SCOPE) -> None:
        self._edit_bad_revisions(lambda revs: revs if sha in revs else [*revs, sha], scope)

    def remove_bad_revision(self, sha: str, *, scope: str = CLUSTER_SCOPE) -> None:
        self._edit_bad_revisions(lambda revs: [r for r in revs if r != sha], scope)

    def _edit_bad_revisions(self, edit: Any, scope: str) -> None:
        # Read-modify-write under the state lock: two agents marking revisions bad both count.
        with self._state_session() as s:
            row = s.get(AgentStateRow, (scope, "bad_revisions"))
            current = [] if row is None else list(json.loads(row.value_json))
            self._put(s, scope, "bad_revisions", edit(current))


def _outbox_item(row: OutboxRow) -> OutboxItem:
    return OutboxItem(id=row.id, event_id=row.event_id, target=row.target,
                      state=row.state,  # type: ignore[arg-type]
                      attempts=row.attempts, next_attempt_at=row.next_attempt_at, last_error=row.last_error,
                      created=row.created, sent_at=row.sent_at, sent_by=row.sent_by)


def _walk(rows: Iterable[Any], head: tuple[int, str] | None) -> VerifyResult:
    problems: list[Problem] = []
    prev_id, prev_stored, prev_computed = 0, GENESIS_HASH, GENESIS_HASH
    prev_edited: int | None = None  # index in problems of an "edited" verdict on the previous row
    checked = 0

    def reclassify_previous(prev: int) -> None:
        # The previous row's content still hashes to what the next link (or the head) records:
        # only its stored hash was changed.
        if prev_edited is not None:
            problems[prev_edited] = Problem(kind="hash-altered", event_id=prev,
                                            message=f"event {prev}: stored hash altered, content intact")

    links = _Links()
    for m in rows:
        checked += 1
        eid = int(m["id"])
        links.add(m)
        gap = eid != prev_id + 1
        if gap:
            what = f"events {prev_id + 1}..{eid - 1} are" if eid - 1 > prev_id + 1 else f"event {eid - 1} is"
            problems.append(Problem(kind="missing", event_id=prev_id + 1, last_event_id=eid - 1,
                                    message=f"{what} missing (deleted)"))
        cols = {k: m[k] for k in chain.HASHED_COLUMNS_V2}
        try:
            computed = chain.event_hash(eid, m["prev_hash"], cols, int(m["hash_format"]))
        except ValueError:
            problems.append(Problem(kind="unknown-format", event_id=eid,
                                    message=f"event {eid}: hash format {m['hash_format']} not known"))
            computed = m["hash"]
        if not gap and m["prev_hash"] != prev_stored:
            if prev_edited is not None and m["prev_hash"] == prev_computed:
                reclassify_previous(prev_id)
            else:
                problems.append(Problem(kind="link-broken", event_id=eid,
                                        message=f"event {eid}: prev_hash does not match event {prev_id}'s "
                                        "hash (that event rewritten with a new hash, or this link edited)"))
        prev_edited = None
        if computed != m["hash"]:
            prev_edited = len(problems)
            problems.append(Problem(kind="edited", event_id=eid,
                                    message=f"event {eid}: content does not match its hash (edited)"))
        prev_id, prev_stored, prev_computed = eid, m["hash"], computed

    head_seq, head_hash = head if head is not None else (None, None)
    if head is None:
        problems.append(Problem(kind="no-head", message="the chain head row is missing"))
    elif head[0] > prev_id:
        problems.append(Problem(kind="truncated", event_id=prev_id + 1, last_event_id=head[0],
                                message=f"the chain head records {head[0]} events, the last present is "
                                f"{prev_id}: events {prev_id + 1}..{head[0]} deleted"))
    elif head[0] < prev_id:
        problems.append(Problem(kind="head-mismatch", event_id=head[0] + 1, last_event_id=prev_id,
                                message=f"events {head[0] + 1}..{prev_id} are beyond the chain head "
                                "(written around the store, or the head edited)"))
    elif head[1] != prev_stored:
        if prev_edited is not None and head[1] == prev_computed:
            reclassify_previous(prev_id)
        else:
            problems.append(Problem(kind="head-mismatch", event_id=prev_id or None,
                                    message="the chain head's hash does not match the last event"))
    problems.extend(links.gaps())
    problems.sort(key=lambda p: (p.event_id is None, p.event_id or 0))
    return VerifyResult(ok=not problems, checked=checked, head_seq=head_seq, head_hash=head_hash,
                        problems=problems, backfilled=links.backfilled)


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


class _Links:
    """The evidence of writes the trail misses, gathered while verify walks it: every write's event names
    the write before it (details.marker_prev, from the marker history); a `gap` event records what the
    agent found missing and could not backfill."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.links: list[tuple[int, str | None, str]] = []  # (row id, its event id, the write before it)
        self.gap_rows: list[tuple[int, dict[str, Any]]] = []
        self.backfilled = 0

    def add(self, m: Any) -> None:
        if m["event_id"]:
            self.held.add(m["event_id"])
        text_ = m["details_json"] or ""
        if "marker_prev" not in text_ and m["kind"] != EventKind.GAP.value and "backfilled" not in text_:
            return  # most rows: no JSON to parse
        try:
            details = json.loads(text_)
        except ValueError:
            return  # an edited row: the hash check reports it
        if not isinstance(details, dict):
            return
        if details.get("backfilled"):
            self.backfilled += 1
        if m["kind"] == EventKind.GAP.value:
            self.gap_rows.append((int(m["id"]), details))
        elif isinstance(details.get("marker_prev"), str):
            self.links.append((int(m["id"]), m["event_id"], details["marker_prev"]))

    def gaps(self) -> list[Problem]:
        out: list[Problem] = []
        explained = set()
        for row_id, d in self.gap_rows:
            explained.add(d.get("before_event"))
            since, until = _time(d.get("since")), _time(d.get("until"))
            span = f"between {since:%Y-%m-%d %H:%M:%S} and {until:%Y-%m-%d %H:%M:%S} UTC" if since and until \
                else f"before {until:%Y-%m-%d %H:%M:%S} UTC" if until else "at an unknown time"
            out.append(Problem(kind="gap", event_id=row_id, since=since, until=until,
                               message=f"event {row_id}: writes {span} are missing from this trail (this "
                               "node was away and the CIB marker history no longer names them)"))
        # The first linked write of a trail has nothing before it to hold (a new node, or an upgrade).
        for row_id, event_id, prev in self.links[1:]:
            if prev in self.held or event_id in explained:
                continue
            out.append(Problem(kind="gap", event_id=row_id, missed=None,
                               message=f"event {row_id}: the write before it ({prev}) is not in this trail "
                               "(missed while this node was away, and not backfilled)"))
        return out


__all__ = ["DEFAULT_URL", "URL_ENV", "AuditError", "AuditStore", "EventNotFound", "resolve_url"]
