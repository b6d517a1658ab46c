"""Delivering notifications: Apprise at the edge, and the agent's sender thread.

The sender owns its own audit store (its own database connection), claims due outbox rows, sends each
with a timeout, and marks it sent or schedules the next try (controller.notifications.backoff). A pass
never waits for it: the pass only adds rows, in the event's transaction. Rows survive a restart of the
agent; a row claimed by a sender that died is due again once its lease ends (sent at least once).

Apprise is imported only here, and only when a target is configured (about 0.2 s, plugins included).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.audit.store import AuditStore
from controller.notifications import (
    Message,
    NotifyTarget,
    backoff,
    message,
    scheme,
    scrub,
    state_after_failure,
)

log = logging.getLogger("ha-gitops.notify")

IDLE_WAIT = 30.0  # seconds the sender sleeps with nothing due (an append wakes it at once)
BATCH = 5  # rows claimed per round: all of them are sent (or given up for the round) within the lease
KEEP_SENT = timedelta(days=30)  # delivered rows kept this long (the events themselves stay in the trail)


def _apprise() -> Any:
    """Apprise, its logger kept out of ours: what it says is captured per call and logged once, by us,
    scrubbed (its messages may name a URL)."""
    import apprise

    logging.getLogger("apprise").propagate = False
    return apprise


def check_url(url: str) -> str | None:
    """None when Apprise can send to this URL; else why not, without the URL (it may hold a credential)."""
    apprise = _apprise()

    with apprise.LogCapture(level=logging.ERROR):  # Apprise logs the URL it rejects: keep it out of logs
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return (f"Apprise cannot send to this URL: the scheme {scheme(url)!r} is unknown, or the URL lacks "
                "what that service needs (see https://appriseit.com/services/)")
    return None


class Delivery:
    """One target's Apprise plugin, made once, with the target's timeouts."""

    def __init__(self, target: NotifyTarget) -> None:
        apprise = _apprise()

        self.target = target
        self._url = target.secret_url()
        with apprise.LogCapture(level=logging.ERROR):
            plugin = apprise.Apprise.instantiate(self._url)
        if plugin is None:
            raise ValueError(f"notify target {target.label}: {check_url(self._url)}")
        # Connect and read timeouts (Apprise's cto/rto, 4 s by default): one delivery never hangs.
        plugin.socket_connect_timeout = target.timeout
        plugin.socket_read_timeout = target.timeout
        self._plugin: Any = plugin
        self._shown = str(plugin.url(privacy=True))

    def send(self, msg: Message) -> str | None:
        """None when delivered; else why not (scrubbed of the URL's secret parts)."""
        apprise = _apprise()

        try:
            with apprise.LogCapture(level=logging.WARNING) as captured:
                ok = self._plugin.notify(body=msg.body, title=msg.title, notify_type=msg.type)
            logged = [ln.split(" - ", 2)[-1] for ln in captured.getvalue().splitlines() if ln.strip()]
        except Exception as exc:  # a plugin's bug must not end the sender
            ok, logged = False, [f"{type(exc).__name__}: {exc}"]
        if ok:
            return None
        why = "; ".join(logged[-2:]) or "the service did not accept the notification"
        return scrub(why, self._url, self._shown)


Clock = Callable[[], datetime]


class Sender:
    """The background thread that empties the outbox. `run_once` is one round (tests call it)."""

    def __init__(self, store: AuditStore, targets: Sequence[NotifyTarget], *, node: str, cluster: str,
                 clock: Clock | None = None, rng: Callable[[], float] = random.random,
                 deliveries: dict[str, Any] | None = None) -> None:
        self.store = store
        self.targets = {t.key: t for t in targets}
        self.node = node
        self.cluster = cluster
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.rng = rng
        self._deliveries: dict[str, Any] = dict(deliveries or {})
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned: datetime | None = None

    def _delivery(self, key: str) -> Any:
        if key not in self._deliveries:
            self._deliveries[key] = Delivery(self.targets[key])
        return self._deliveries[key]

    def lease(self) -> float:
        """How long claimed rows are this sender's: longer than a round of BATCH deliveries may take (each
        at most a connect and a read timeout), so no other sender of a shared trail sends them too."""
        return BATCH * 2 * max((t.timeout for t in self.targets.values()), default=10.0) + 30.0

    def run_once(self) -> int:
        """Send the due rows (BATCH at most; the loop comes back at once for more); the number delivered.
        A target that fails is not tried again this round: its other rows wait for their next try."""
        now = self.clock()
        items = self.store.claim_notifications(self.targets.keys(), now=now, lease=self.lease(), limit=BATCH)
        sent = 0
        down: dict[str, str] = {}  # targets that failed this round: their other rows wait, untried
        for item in items:
            target = self.targets[item.target]
            error: str | None
            event = self.store.by_event_id(item.event_id)
            if item.target in down:
                error = down[item.target]
            elif event is None:  # the trail lost it (restored from a backup?): nothing to tell
                error = f"event {item.event_id} is not in the audit trail"
            else:
                try:
                    error = self._delivery(item.target).send(message(event.masked(), cluster=self.cluster))
                except ValueError as exc:  # the URL file changed into something Apprise cannot use
                    error = str(exc)
            done = self.clock()
            if error is None:
                self.store.notification_sent(item.id, node=self.node, now=done)
                sent += 1
                log.info("notified %s of event %s (%s %s)", target.label, item.event_id[:8],
                         event.kind if event else "-", event.outcome if event else "-")
                continue
            if event is not None:
                down.setdefault(item.target, error)
            wait = backoff(item.attempts, initial=target.retry_initial, maximum=target.retry_max,
                           rng=self.rng)
            state = state_after_failure(item.attempts)
            self.store.notification_failed(item.id, error=error, retry_at=done + timedelta(seconds=wait),
                                           state=state)
            log.warning("notifying %s of event %s failed (attempt %d, next in %.0fs): %s", target.label,
                        item.event_id[:8], item.attempts, wait, error)
        if self._pruned is None or now - self._pruned > timedelta(hours=1):
            self._pruned = now
            self.store.prune_notifications(now - KEEP_SENT)
        return sent

    def _wait_seconds(self) -> float:
        due = self.store.next_notification_due(self.targets.keys())
        if due is None:
            return IDLE_WAIT
        return max(0.0, min(IDLE_WAIT, (due - self.clock()).total_seconds()))

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
                wait = self._wait_seconds()
            except Exception as exc:  # the trail is failing (the pass reports it), or a bug: retry later
                log.error("notification sender: %s", exc)
                wait = IDLE_WAIT
            self._wake.wait(wait)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notify-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.close()
