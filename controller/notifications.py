"""Notifications, the pure part: which targets an event goes to, the message, the retry schedule.

A `[[notify]]` table of the agent settings is one target: an Apprise URL (Slack, Teams, Matrix, email,
ntfy, a generic JSON webhook, ...) and the events it wants. The agent that records an event as the
writer puts one outbox row per target in the audit database, in the event's own transaction
(controller/audit/store.py); a sender thread (controller/notify_send.py) delivers the rows and retries
with backoff. Nothing here touches the network, the database or the clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from controller.audit.models import NAME_PATTERN, AuditEvent, EventKind, Outcome

# What an operator must hear about without running `audit log`; a kind alone means every outcome.
DEFAULT_EVENTS: tuple[str, ...] = (
    "drift-detected", "drift-corrected", "refused", "rollback", "auto-rollback",
    "verify:failure", "verify:inconclusive",
    "rollout-step:failure", "rollout-step:skipped",  # a rollout failed, or paused by a gate (stuck)
    "apply:failure",  # a write that lost the race
    "first-contact:skipped",  # the agents wait for `ha-gitops adopt`
    "error", "suspend", "resume", "adopt",
)
ALL = "*"
BODY_MAX = 1800  # characters: short enough for every chat service (Slack's hard limit is far above)
FAILING_AFTER = 3  # failed attempts after which a row shows as failing (it is still retried)

NotifyType = Literal["info", "success", "warning", "failure"]


class NotifyTarget(BaseModel):
    """One `[[notify]]` table: where to send (an Apprise URL) and which events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        None, description="A short name (lowercase letters, digits, '-'): how `status` and the outbox name "
                          "the target. Default: derived from the URL (a digest, never the URL itself).")
    url: SecretStr | None = Field(
        None, description="The Apprise URL (https://appriseit.com/services/): slack://..., msteams://..., "
                          "matrixs://..., mailtos://..., ntfys://..., json://host:port/path (a generic "
                          "JSON webhook; jsons:// for https). Holds credentials: never shown in clear.")
    url_file: Path | None = Field(
        None, description="Instead of url: a file holding the URL (first line), e.g. readable by root "
                          "only, so agent.toml itself holds no credential.")
    events: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="The events to send: an event kind (every outcome), \"kind:outcome\" (e.g. "
                    "\"verify:failure\"), or \"*\" for everything. Default: " + ", ".join(DEFAULT_EVENTS))
    timeout: float = Field(10.0, gt=0, le=300,
                           description="Seconds one delivery may take to connect, and again to get the "
                                       "answer, before it counts as failed and is retried.")
    retry_initial: float = Field(5.0, gt=0, description="Seconds before the first retry of a failed "
                                                        "delivery; doubled after each further failure.")
    retry_max: float = Field(600.0, gt=0, description="The longest wait between two retries, in seconds. "
                                                      "A delivery is retried until it succeeds.")

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        kinds, outcomes = {k.value for k in EventKind}, {o.value for o in Outcome}
        for entry in value:
            if entry == ALL:
                continue
            kind, _, outcome = entry.partition(":")
            if kind not in kinds:
                raise ValueError(f"unknown event kind {kind!r} in {entry!r} "
                                 f"(known: {', '.join(sorted(kinds))})")
            if outcome and outcome not in outcomes:
                raise ValueError(f"unknown outcome {outcome!r} in {entry!r} "
                                 f"(known: {', '.join(sorted(outcomes))})")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self

    def secret_url(self) -> str:
        """The URL in clear (only for Apprise): from `url`, or the first line of `url_file`."""
        if self.url is not None:
            return self.url.get_secret_value().strip()
        assert self.url_file is not None
        try:
            lines = self.url_file.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read url_file {self.url_file}: {exc.strerror or exc}") from exc
        if not lines or not lines[0].strip():
            raise ValueError(f"url_file {self.url_file} is empty")
        return lines[0].strip()

    @property
    def key(self) -> str:
        """How the outbox names the target: its name, else a digest of the URL (never the URL)."""
        if self.name:
            return self.name
        source = self.url.get_secret_value().strip() if self.url is not None else f"file:{self.url_file}"
        return "url-" + hashlib.sha256(source.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """For display: the name, else the URL's scheme and the digest (the rest may be a credential)."""
        if self.name:
            return self.name
        if self.url is None:
            return f"{self.url_file} ({self.key})"
        return f"{scheme(self.url.get_secret_value())}://… ({self.key})"

    def wants(self, kind: str, outcome: str) -> bool:
        return any(e in (ALL, kind, f"{kind}:{outcome}") for e in self.events)


def scheme(url: str) -> str:
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else "?"


def route(kind: str, outcome: str, targets: Sequence[NotifyTarget]) -> list[str]:
    """The keys of the targets that want an event of this kind and outcome (each once)."""
    keys: list[str] = []
    for t in targets:
        if t.wants(kind, outcome) and t.key not in keys:
            keys.append(t.key)
    return keys


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    body: str
    type: NotifyType


def notify_type(kind: str, outcome: str) -> NotifyType:
    if outcome == Outcome.FAILURE or kind == EventKind.AUTO_ROLLBACK:
        return "failure"
    if outcome in (Outcome.REFUSED, Outcome.INCONCLUSIVE) or kind in (EventKind.DRIFT_DETECTED,
                                                                    EventKind.SUSPEND, EventKind.GAP):
        return "warning"
    if outcome == Outcome.SUCCESS:
        return "success"
    return "info"


def message(event: AuditEvent, *, cluster: str) -> Message:
    """The notification of one event. Pass the event masked (AuditEvent.masked()): no secret goes out."""
    kind, outcome = event.kind, event.outcome
    what = kind if outcome in (Outcome.SUCCESS, "") else f"{kind} ({outcome})"
    summary = event.short_summary or what
    lines = [summary, "", f"cluster: {cluster}", f"event: {what}", f"node: {event.node}"]
    if event.commit is not None:
        subject = (event.commit.message or "").strip().splitlines()
        lines.append(f"commit: {event.commit.short}" + (f" {subject[0][:120]}" if subject else ""))
    if event.error and event.error.strip() and event.error.strip().splitlines()[0] != summary:
        lines.append("error: " + _first_lines(event.error, 6))
    lines.append(f"time: {event.time:%Y-%m-%d %H:%M:%S} UTC")
    if event.event_id:
        lines.append(f"event id: {event.event_id} (ha-gitops audit show {event.event_id[:8]})")
    body = "\n".join(lines)
    if len(body) > BODY_MAX:
        body = body[:BODY_MAX - 1] + "…"
    return Message(title=f"ha-gitops {cluster}: {what}"[:200], body=body, type=notify_type(kind, outcome))


def _first_lines(text: str, n: int) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n  ".join(lines[:n]) + (f"\n  (+{len(lines) - n} more lines)" if len(lines) > n else "")


def backoff(attempts: int, *, initial: float, maximum: float, rng: Callable[[], float]) -> float:
    """Seconds until the next try after `attempts` failed ones: initial, doubled per failure, at most
    `maximum`, less up to 20% (rng() in [0, 1)) so that several agents' retries spread out."""
    base = min(maximum, initial * 2.0 ** max(0, attempts - 1))
    return float(base * (1 - 0.2 * rng()))


def state_after_failure(attempts: int) -> Literal["pending", "failing"]:
    """A row that failed `attempts` times: still pending, or failing (shown in `status`, still retried)."""
    return "failing" if attempts >= FAILING_AFTER else "pending"


def scrub(text: str, secret_url: str, shown_url: str) -> str:
    """An error text with the URL's secret parts blanked: every part of the URL (8+ characters) that
    Apprise's privacy form of it does not show. Apprise's own messages rarely quote a URL, but one that
    does must not put a token in the audit database or the log."""
    out = text
    for part in sorted(set(re.split(r"[/:@?&=#,]+", secret_url)), key=len, reverse=True):
        if len(part) >= 8 and part not in shown_url:
            out = out.replace(part, "****")
    return out
