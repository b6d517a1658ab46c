"""The audit trail at its boundary: pydantic models for events going in and coming out.

Values here are the real ones (a rollback needs the real configuration); call `.masked()` before an
event is shown or exported.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.audit.masking import masked_fields

# Kinds and outcomes are plain validated strings in the database (no DB enum, no CHECK), so a new kind
# needs no migration and an older agent sharing a PostgreSQL trail can still read rows a newer one wrote.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
CIB_VERSION_PATTERN = r"^\d+\.\d+\.\d+$"  # admin_epoch.epoch.num_updates
SHA_PATTERN = r"^[0-9a-f]{7,64}$"
EVENT_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z-]{7,63}$"  # a uuid (the marker's event) or like one
GENESIS_HASH = "0" * 64


class EventKind(StrEnum):
    APPLY = "apply"
    DRIFT_DETECTED = "drift-detected"
    DRIFT_CORRECTED = "drift-corrected"
    ROLLBACK = "rollback"
    REFUSED = "refused"
    ERROR = "error"
    ROLLOUT_STEP = "rollout-step"
    AUTO_ROLLBACK = "auto-rollback"
    VERIFY = "verify"
    SUSPEND = "suspend"
    RESUME = "resume"
    GAP = "gap"  # events this trail misses and could not backfill: when, and what says so
    FIRST_CONTACT = "first-contact"  # agents met a cluster ha-gitops never wrote (the plan, what they did)
    ADOPT = "adopt"  # `ha-gitops adopt`: an operator confirmed the first write (who, from where)
    SECRETS_STORED = "secrets-stored"  # a node wrote its Pacemaker secrets store (fingerprints, no values)


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    SKIPPED = "skipped"  # nothing to do, or another node did it
    INCONCLUSIVE = "inconclusive"  # a verify a concurrent fault clouded: re-checked once the cluster is whole


class SignatureStatus(StrEnum):
    GOOD = "good"
    BAD = "bad"
    UNTRUSTED = "untrusted"  # valid signature, key not in the allowed set
    UNSIGNED = "unsigned"
    NOT_CHECKED = "not-checked"


Kind = Annotated[str, Field(pattern=NAME_PATTERN)]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
CibVersion = Annotated[str, Field(pattern=CIB_VERSION_PATTERN)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must be timezone-aware (UTC is stored)")
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class CommitInfo(BaseModel):
    """The git commit an event is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha: Annotated[str, Field(pattern=SHA_PATTERN)]
    author: str | None = None
    message: str | None = None
    signature: Annotated[str, Field(pattern=NAME_PATTERN)] = SignatureStatus.NOT_CHECKED.value

    @field_validator("sha", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def short(self) -> str:
        return self.sha[:10]


class _EventFields(BaseModel):
    """Everything an event records; shared by the input and the stored model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime = Field(default_factory=_now)
    node: Annotated[str, Field(min_length=1, max_length=253)]
    kind: Kind
    outcome: Annotated[str, Field(pattern=NAME_PATTERN)]
    summary: str | None = None
    commit: CommitInfo | None = None
    cib_version_before: CibVersion | None = None
    cib_version_after: CibVersion | None = None
    config_before: str | None = None
    config_after: str | None = None
    patch: str | None = None
    # The human diff: text, or a JSON structure (whatever controller/cib renders); kept as given.
    diff: Any = None
    corosync_before: str | None = None
    corosync_after: str | None = None
    duration: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    error: str | None = None
    # Free JSON: drift origin (update-origin, update-client, update-user), rollback target event id, ...
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _time_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("details", "diff")
    @classmethod
    def _json_able(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON-serialisable: {exc}") from exc
        return value

    @property
    def short_summary(self) -> str:
        """One line for tables: the summary, else the error, else the commit subject."""
        for text in (self.summary, self.error, self.commit.message if self.commit else None):
            if text and text.strip():
                return text.strip().splitlines()[0]
        return ""


class NewEvent(_EventFields):
    """An event to append. Kind and outcome must be ones this version knows.

    `event_id` is the event's cluster-wide id: a write's is the marker event uuid, so every node's trail
    (and a shared one) holds the write under the same id; appending an id the trail holds already adds
    nothing (AuditStore.append returns the stored event)."""

    event_id: EventId = Field(default_factory=lambda: str(uuid.uuid4()))

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        known = {k.value for k in EventKind}
        if value not in known:
            raise ValueError(f"unknown event kind {value!r} (known: {', '.join(sorted(known))})")
        return value

    @field_validator("outcome")
    @classmethod
    def _known_outcome(cls, value: str) -> str:
        known = {o.value for o in Outcome}
        if value not in known:
            raise ValueError(f"unknown outcome {value!r} (known: {', '.join(sorted(known))})")
        return value


class AuditEvent(_EventFields):
    """A stored event: its place in the chain and its hash. Kind/outcome accepted as stored."""

    id: int
    event_id: str | None = None  # None only in a row an agent older than schema 0002 appended
    prev_hash: str
    hash: str
    hash_format: int = 1

    @property
    def backfilled(self) -> bool:
        """Recorded after the fact from other evidence (the marker history), not seen as it happened."""
        return bool(self.details.get("backfilled"))

    def masked(self) -> AuditEvent:
        """A copy fit for display or export: secret parameter values replaced by ****."""
        return self.model_copy(update=masked_fields(self))


class AgentState(BaseModel):
    """The agent's own small state (not part of the hash chain)."""

    model_config = ConfigDict(frozen=True)

    pinned_revision: str | None = None
    suspended: bool = False
    bad_revisions: list[str] = Field(default_factory=list)


class OutboxItem(BaseModel):
    """A row of the notification outbox: one event for one target, and how its delivery goes."""

    model_config = ConfigDict(frozen=True)

    id: int
    event_id: str
    target: str
    state: Literal["pending", "failing", "sent"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = None
    created: datetime
    sent_at: datetime | None = None
    sent_by: str | None = None


ProblemKind = Literal[
    "edited",  # content no longer matches the row's hash
    "hash-altered",  # the stored hash was changed, content intact (the next row still links to the real one)
    "link-broken",  # prev_hash does not match the previous row's hash
    "missing",  # ids absent from the chain: rows deleted (event_id..last_event_id)
    "truncated",  # the chain head records more events than exist: tail deleted
    "head-mismatch",  # the chain head disagrees with the last row (edited head or unrecorded rows)
    "no-head",  # the chain head row is gone
    "unknown-format",  # a hash format this version cannot check
    "gap",  # events this trail misses, which other evidence (the CIB marker history) shows happened
]


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ProblemKind
    event_id: int | None = None
    last_event_id: int | None = None  # for ranges (missing, truncated)
    message: str
    # gap: the time range the trail misses (None: unknown on that side) and how many events, if known
    since: datetime | None = None
    until: datetime | None = None
    missed: int | None = None


class VerifyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    checked: int
    head_seq: int | None
    head_hash: str | None
    problems: list[Problem]
    backfilled: int = 0  # events recorded after the fact from the marker history (not a problem)


def now_utc() -> datetime:
    return _now()


__all__ = [
    "GENESIS_HASH",
    "AgentState",
    "AuditEvent",
    "CommitInfo",
    "EventKind",
    "NewEvent",
    "OutboxItem",
    "Outcome",
    "Problem",
    "SignatureStatus",
    "VerifyResult",
]
