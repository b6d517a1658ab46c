"""`ha-gitops blame`: for each configuration object, the event that last changed it, with its commit,
author and time. Pure: a trail's events in, one answer out (the CLI reads the trail and prints it).

What an event changed is its `diff` (the object-level changes: `ObjectChange` dumps), else, for a write
an observer saw live, the semantic diff of the configurations before and after it that the event holds
(or, when it holds only the after, the one the write just before it left). A hand edit is a
`drift-detected` event: its diff says what to do to the live CIB to undo the edit, so what the edit did
is the reverse. A write whose changes this trail cannot know (backfilled from the CIB marker history:
no configuration) is named: any object last changed before it may have changed since.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.cib.diff import semantic_trees
from controller.cib.document import as_cib
from controller.cib.marker import OWN_RULES
from controller.cib.render import Action, FieldChange, ObjectChange, describe
from controller.cib.xml import parse_xml_bytes
from controller.errors import HaGitopsError

# Events whose success put a configuration in place (the audit store's APPLYING_KINDS).
WRITE_KINDS = frozenset({"apply", "drift-corrected", "rollback", "auto-rollback"})
HAND_EDIT = "drift-detected"
_REVERSED: dict[str, Action] = {"added": "removed", "removed": "added", "changed": "changed",
                                "moved": "moved"}


class TrailEvent(BaseModel):
    """What blame reads of an audit event (controller.audit.models.AuditEvent has all of it)."""

    model_config = ConfigDict(frozen=True)

    seq: int  # its number in this trail: the order changes happened in, as this node recorded them
    event_id: str | None = None
    time: datetime
    node: str
    kind: str
    outcome: str
    commit_sha: str | None = None
    commit_author: str | None = None
    commit_message: str | None = None
    diff: Any = None
    config_before: str | None = None
    config_after: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class LastChange(BaseModel):
    """The last change of one object this trail knows of."""

    kind: str  # resource, constraint, property, rsc_default, node, ...
    id: str
    action: Action
    fields: list[FieldChange] = Field(default_factory=list)
    event_id: str | None
    event: int  # its number in this trail
    event_kind: str  # apply, drift-corrected, rollback, auto-rollback, drift-detected (a hand edit)
    node: str  # who wrote it (the writer's node, also in an observer's trail)
    time: datetime
    commit: str | None = None
    author: str | None = None
    message: str | None = None
    by: str | None = None  # a hand edit: who made it (update-user via update-client on update-origin)
    unsure_after: list[str] = Field(default_factory=list)  # later writes of which this trail knows no diff

    @property
    def object(self) -> str:
        return f"{self.kind} {self.id}"


class UnknownWrite(BaseModel):
    event_id: str | None
    event: int
    kind: str
    node: str
    time: datetime
    backfilled: bool


class Blame(BaseModel):
    objects: list[LastChange] = Field(default_factory=list)  # by kind, then id
    unknown: list[UnknownWrite] = Field(default_factory=list)  # writes whose changes are not known here


def _changes(value: Any) -> list[ObjectChange] | None:
    if not isinstance(value, list):
        return None
    try:
        return [ObjectChange.model_validate(c) for c in value]
    except ValidationError:
        return None


def config_changes(before: str, after: str) -> list[ObjectChange] | None:
    """The object-level changes between two stored configurations (None: one is unreadable)."""
    try:
        old = as_cib(parse_xml_bytes(before.encode(), source="configuration before"))
        new = as_cib(parse_xml_bytes(after.encode(), source="configuration after"))
        old_t, new_t = semantic_trees(old, new, OWN_RULES)
    except HaGitopsError:
        return None
    return [c for c in describe(old_t, new_t) if c.kind not in ("cib", "status")]


def _hand_edit(change: ObjectChange) -> ObjectChange:
    """A drift diff is live -> what ha-gitops wrote; the hand edit was the reverse."""
    return ObjectChange(kind=change.kind, id=change.id, action=_REVERSED[change.action],
                        details=[FieldChange(field=f.field, old=f.new, new=f.old) for f in change.details])


def _when(e: TrailEvent) -> datetime:
    # An observer records a write when it sees it; the writer's time is in details.applied_at.
    at = e.details.get("applied_at")
    if isinstance(at, str):
        try:
            return datetime.fromisoformat(at)
        except ValueError:
            pass
    return e.time


def _by(e: TrailEvent) -> str | None:
    origin = e.details.get("origin")
    if not isinstance(origin, dict):
        return None
    user, client, host = (origin.get(k) for k in ("update-user", "update-client", "update-origin"))
    return f"{user or '?'} via {client or '?'} on {host or '?'}"


def event_changes(e: TrailEvent, previous: TrailEvent | None, between: frozenset[str] = frozenset()
                  ) -> list[ObjectChange] | None:
    """What one event changed (None: a write whose changes this trail cannot know). `previous` is the
    write recorded before it in this trail, `between` the ids of the events after that which wrote no
    configuration (a refusal, a switch: the marker history may name one as the event before)."""
    listed = _changes(e.diff)
    if e.kind == HAND_EDIT:
        return [_hand_edit(c) for c in listed or []]
    if listed is not None and (listed or e.diff == []):
        return listed
    if e.config_before is not None and e.config_after is not None:
        return config_changes(e.config_before, e.config_after)
    prev_event = e.details.get("marker_prev")
    if e.config_after is not None and previous is not None and previous.config_after is not None \
            and prev_event is not None and (previous.event_id == prev_event or prev_event in between):
        return config_changes(previous.config_after, e.config_after)
    return None


def _matches(change: ObjectChange, wanted: str) -> bool:
    return wanted in (change.id, f"{change.kind}:{change.id}", f"{change.kind} {change.id}")


def blame(events: Sequence[TrailEvent], wanted: str | None = None) -> Blame:
    """For each object (or only `wanted`: an id, or `kind:id`), the last event of `events` that changed
    it. Events are taken in trail order (seq); only successful writes and recorded hand edits count."""
    authors = {e.commit_sha: e.commit_author for e in events if e.commit_sha and e.commit_author}
    last: dict[tuple[str, str], LastChange] = {}
    unknown: list[UnknownWrite] = []
    previous: TrailEvent | None = None
    between: set[str] = set()  # since `previous`: events that wrote no configuration
    for e in sorted(events, key=lambda x: x.seq):
        if e.outcome != "success" or (e.kind not in WRITE_KINDS and e.kind != HAND_EDIT):
            if e.event_id:
                between.add(e.event_id)
            continue
        found = event_changes(e, previous, frozenset(between))
        if e.kind in WRITE_KINDS:
            previous, between = e, set()
        else:  # a hand edit: the configuration the write before left is not the one before the next
            previous = None
        if found is None:
            unknown.append(UnknownWrite(event_id=e.event_id, event=e.seq, kind=e.kind, node=e.node,
                                        time=_when(e), backfilled=bool(e.details.get("backfilled"))))
            for change in last.values():
                if e.event_id:
                    change.unsure_after.append(e.event_id)
            continue
        for c in found:
            if wanted is not None and not _matches(c, wanted):
                continue
            last[(c.kind, c.id)] = LastChange(
                kind=c.kind, id=c.id, action=c.action, fields=c.details, event_id=e.event_id, event=e.seq,
                event_kind=e.kind, node=e.node, time=_when(e), commit=e.commit_sha,
                author=e.commit_author or (authors.get(e.commit_sha) if e.commit_sha else None),
                message=e.commit_message,
                by=_by(e) if e.kind == HAND_EDIT else None)
    return Blame(objects=[last[k] for k in sorted(last)], unknown=unknown)


__all__ = ["HAND_EDIT", "WRITE_KINDS", "Blame", "LastChange", "TrailEvent", "UnknownWrite", "blame",
           "config_changes", "event_changes"]
