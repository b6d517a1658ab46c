"""Delivering notifications: Apprise at the edge, and the agent's sender thread.

The sender owns its own audit store (its own database connection), claims due outbox rows, sends each
with a timeout, and marks it sent or schedules the next try (controller.notifications.backoff). A pass
never waits for it: the pass only adds rows, in the event's transaction. Rows survive a restart of the
agent; a row claimed by a sender that died is due again once its lease ends (sent at least once).

Apprise runs in a helper process (controller/notify_child.py), never in the agent: loading its plugins
costs 16 MB that Python would keep for good, for a few messages a day.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
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
    scrub,
    state_after_failure,
)

log = logging.getLogger("ha-gitops.notify")

IDLE_WAIT = 30.0  # seconds the sender sleeps with nothing due (an append wakes it at once)
BATCH = 5  # rows claimed per round: all of them are sent (or given up for the round) within the lease
KEEP_SENT = timedelta(days=30)  # delivered rows kept this long (the events themselves stay in the trail)


def _child(request: dict[str, Any], timeout: float, urls: Sequence[str]) -> dict[str, Any]:
    """One request to Apprise in its own process (controller/notify_child.py says why); the helper's own
    failures come back with every part of `urls` blanked."""
    try:
        r = subprocess.run([sys.executable, "-m", "controller.notify_child"], input=json.dumps(request),
                           capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer from the notification helper within {timeout:g}s"}
    if r.returncode != 0:
        # Its traceback may quote the request (a URL): only its last line, scrubbed by the caller.
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        for url in urls:
            last = scrub(last, url, "")
        return {"error": f"the notification helper failed (exit {r.returncode}): {last}"}
    answer = json.loads(r.stdout)
    return answer if isinstance(answer, dict) else {"error": "the notification helper said nothing usable"}


def check_urls(urls: Sequence[str]) -> list[str | None]:
    """For each URL: None when Apprise can send to it, else why not, without the URL (it may hold a
    credential). One helper process for all of them."""
    answer = _child({"op": "check", "urls": list(urls)}, timeout=60, urls=urls)
    problems = answer.get("problems")
    if not isinstance(problems, list) or len(problems) != len(urls):
        raise ValueError(str(answer.get("error") or "the notification helper gave no answer"))
    return [p if isinstance(p, str) else None for p in problems]


def check_url(url: str) -> str | None:
    return check_urls([url])[0]


class Delivery:
    """One target: its URL and timeouts; each send is one helper process (Apprise is never loaded into the
    agent)."""

    def __init__(self, target: NotifyTarget) -> None:
        self.target = target

    def send(self, msg: Message) -> str | None:
        """None when delivered; else why not (scrubbed of the URL's secret parts)."""
        url = self.target.secret_url()
        answer = _child({"op": "send", "url": url, "title": msg.title, "body": msg.body, "type": msg.type,
                         "timeout": self.target.timeout}, timeout=2 * self.target.timeout + 30, urls=[url])
        error = answer.get("error")  # scrubbed by the helper, which knows Apprise's privacy form of the URL
        return str(error) if error else None


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
