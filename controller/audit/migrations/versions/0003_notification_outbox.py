"""The notification outbox: one row per event and `[[notify]]` target, delivered by the agents' senders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_by", sa.String(253), nullable=True),
    )
    op.create_index("ix_notification_outbox_event_target", "notification_outbox", ["event_id", "target"],
                    unique=True)
    op.create_index("ix_notification_outbox_due", "notification_outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_outbox_due", "notification_outbox")
    op.drop_index("ix_notification_outbox_event_target", "notification_outbox")
    op.drop_table("notification_outbox")
