"""What a trail missed: from the CIB marker's history and what the trail holds, which writes to backfill and
whether a gap remains. Pure: data in, data out (the reconciler records what this returns).

Every node keeps its own trail, and a node that was down (or an agent that was stopped) saw none of the
writes made meanwhile: the marker shows only the newest. The marker's history (controller.cib.marker)
keeps the last writes, newest first, and the event just before the oldest (`history_before`), so the
trail can tell exactly what it misses while the history reaches back to the last write it holds; past
that, what was missed between is unknown, and that is a gap.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from controller.cib.marker import HistoryEntry, Marker, history_entries

# In a shared trail the writer records its own write, in full (patch, timings): another agent records it
# only once it is this old and still missing (the writer died between its write and its record).
SHARED_GRACE = timedelta(seconds=30)


class Missed(BaseModel):
    """A write the trail does not hold, to record: `prev` is the write before it (for verify's links)."""

    model_config = ConfigDict(frozen=True)

    entry: HistoryEntry
    prev: str | None
    current: bool  # the marker's own write or newer: seen now, not after the fact (not backfilled)
    recovered: bool  # this node's own write, never recorded (its agent died after the write)


class Gap(BaseModel):
    """Writes happened that the trail does not hold and the history no longer names."""

    model_config = ConfigDict(frozen=True)

    after_event: str | None  # the last write the trail holds
    since: datetime | None   # its time
    before_event: str        # the oldest write the history still names (backfilled, first after the gap)
    until: datetime | None   # its time
    lost_event: str | None   # the write just before `before_event` (history_before), not held either


class Backfill(BaseModel):
    model_config = ConfigDict(frozen=True)

    record: list[Missed] = Field(default_factory=list)  # oldest first
    gap: Gap | None = None
    deferred: int = 0  # left to the writer for now (a shared trail, a fresh write)


def plan_backfill(marker: Marker, known: Collection[str], *, node: str, last_seen: str | None,
                  last_seen_at: datetime | None, now: datetime, shared: bool) -> Backfill:
    """The writes of `marker`'s history (and the marker's own) that are not in `known` (event ids the trail
    holds), oldest first; and the gap, when the trail held an earlier write (`last_seen`, this node's
    newest) that the history does not reach back to."""
    entries = history_entries(marker)
    if marker.event and all(e.event != marker.event for e in entries):
        # A marker written before histories were kept: its own write is all there is to go on.
        head = HistoryEntry(event=marker.event, kind=marker.kind or "apply", revision=marker.revision,
                            node=marker.applied_by, at=None)
        entries = [head]
    if not entries:
        return Backfill()
    prevs = [e.event for e in entries[1:]] + [marker.history_before]
    # The marker's own write is the live configuration, seen now even when entries that wrote no
    # configuration (a suspend, a refusal) came after it.
    newest_write = next((i for i, e in enumerate(entries) if e.event == marker.event), 0)
    record: list[Missed] = []
    deferred = 0
    for i, (entry, prev) in reversed(list(enumerate(zip(entries, prevs, strict=True)))):
        if entry.event in known:
            continue
        mine = entry.node == node
        if shared and not mine and (entry.time is None or now - entry.time < SHARED_GRACE):
            deferred += 1
            continue
        record.append(Missed(entry=entry, prev=prev, current=i <= newest_write, recovered=mine))
    gap = None
    oldest, before = entries[-1], marker.history_before
    if last_seen is not None and oldest.event not in known and before is not None \
            and before not in known and last_seen not in {e.event for e in entries}:
        gap = Gap(after_event=last_seen, since=last_seen_at, before_event=oldest.event, until=oldest.time,
                  lost_event=before)
    return Backfill(record=record, gap=gap, deferred=deferred)


__all__ = ["SHARED_GRACE", "Backfill", "Gap", "Missed", "plan_backfill"]
