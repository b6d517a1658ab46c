"""SQLAlchemy tables of the audit trail. The migrations in migrations/versions/ create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Index, Integer, SmallInteger, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CHAIN_NAME = "events"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out (SQLite keeps no zone; PostgreSQL answers in its session zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class EventRow(Base):
    """One audit event. `id` is the chain sequence number, assigned under the append lock."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    node: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str | None] = mapped_column(Text)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    commit_author: Mapped[str | None] = mapped_column(Text)
    commit_message: Mapped[str | None] = mapped_column(Text)
    commit_signature: Mapped[str | None] = mapped_column(String(32))
    cib_version_before: Mapped[str | None] = mapped_column(String(64))
    cib_version_after: Mapped[str | None] = mapped_column(String(64))
    config_before: Mapped[str | None] = mapped_column(Text)
    config_after: Mapped[str | None] = mapped_column(Text)
    patch: Mapped[str | None] = mapped_column(Text)
    diff_json: Mapped[str | None] = mapped_column(Text)
    corosync_before: Mapped[str | None] = mapped_column(Text)
    corosync_after: Mapped[str | None] = mapped_column(Text)
    duration: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    details_json: Mapped[str] = mapped_column(Text)
    # The cluster-wide id: the same event has the same event_id in every node's trail (a write's is the
    # marker's event uuid). NULL only in rows an agent older than schema 0002 appended to a shared trail.
    event_id: Mapped[str | None] = mapped_column(String(64))
    hash_format: Mapped[int] = mapped_column(SmallInteger)
    # UNIQUE prev_hash: even a bug in the locking could not fork the chain, the second insert fails.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (
        Index("ix_audit_events_kind_id", "kind", "id"),
        Index("ix_audit_events_commit_sha", "commit_sha"),
        Index("ix_audit_events_time", "time"),
        Index("ix_audit_events_event_id", "event_id", unique=True),
    )


class ChainHeadRow(Base):
    """The chain's last seq and hash, updated in the append transaction: detects a deleted tail, and is
    the row appends lock (SELECT ... FOR UPDATE) on PostgreSQL."""

    __tablename__ = "audit_chain_head"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AgentStateRow(Base):
    """Key/value state of the agent (pinned revision, suspended, bad revisions). Not hash-chained.

    scope is "cluster" for state every node shares, or a node name."""

    __tablename__ = "agent_state"

    scope: Mapped[str] = mapped_column(String(253), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxRow(Base):
    """One notification to deliver: an event (by its cluster-wide id) for one `[[notify]]` target.

    Added in the transaction that appends the event, by the agent that records it as the writer; one row
    per event and target however many agents record the event (UNIQUE), so a shared trail sends once.
    The target is its name or a digest of its URL, never the URL (it may hold a credential)."""

    __tablename__ = "notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending, failing (still retried), sent
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_by: Mapped[str | None] = mapped_column(String(253))

    __table_args__ = (
        Index("ix_notification_outbox_event_target", "event_id", "target", unique=True),
        Index("ix_notification_outbox_due", "state", "next_attempt_at"),
    )
