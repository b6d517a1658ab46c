"""Initial audit schema: events, chain head, agent state.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("commit_sha", sa.String(64)),
        sa.Column("commit_author", sa.Text),
        sa.Column("commit_message", sa.Text),
        sa.Column("commit_signature", sa.String(32)),
        sa.Column("cib_version_before", sa.String(64)),
        sa.Column("cib_version_after", sa.String(64)),
        sa.Column("config_before", sa.Text),
        sa.Column("config_after", sa.Text),
        sa.Column("patch", sa.Text),
        sa.Column("diff_json", sa.Text),
        sa.Column("corosync_before", sa.Text),
        sa.Column("corosync_after", sa.Text),
        sa.Column("duration", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("hash_format", sa.SmallInteger, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_events_kind_id", "audit_events", ["kind", "id"])
    op.create_index("ix_audit_events_commit_sha", "audit_events", ["commit_sha"])
    op.create_index("ix_audit_events_time", "audit_events", ["time"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"name": "events", "seq": 0, "hash": GENESIS_HASH}])
    op.create_table(
        "agent_state",
        sa.Column("scope", sa.String(253), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_state")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_events")
