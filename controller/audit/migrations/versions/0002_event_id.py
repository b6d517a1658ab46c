"""Events get a cluster-wide id (event_id): the same event has the same id in every node's trail.

Existing rows get the marker event uuid they recorded (details.marker_event: the writer's and every
observer's row of one write then share it), else a new uuid. Rows keep their hash format (1, which does
not cover event_id); rows appended from now on are format 2, which does.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("event_id", sa.String(64), nullable=True))
    events = sa.table("audit_events", sa.column("id", sa.Integer), sa.column("details_json", sa.Text),
                      sa.column("event_id", sa.String(64)))
    conn = op.get_bind()
    used: set[str] = set()
    for row_id, details_json in conn.execute(sa.select(events.c.id, events.c.details_json)
                                             .order_by(events.c.id)).all():
        try:
            marker_event = json.loads(details_json or "{}").get("marker_event")
        except (ValueError, AttributeError):
            marker_event = None
        eid = marker_event if isinstance(marker_event, str) and marker_event and marker_event not in used \
            else str(uuid.uuid4())
        used.add(eid)
        conn.execute(events.update().where(events.c.id == row_id).values(event_id=eid))
    op.create_index("ix_audit_events_event_id", "audit_events", ["event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_audit_events_event_id", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("event_id")
