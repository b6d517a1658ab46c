"""The agent's Prometheus metrics: what its passes, its source and its trail say, in exposition format.

Fed by the agent from values it already has (a pass's PassResult, a sync's SyncResult, the audit chain's
verify), never by calls scattered through the pass. The registry is this agent's own, not the process-wide
default one. Cluster-level facts (nodes, resources, quorum, fencing) are ClusterLabs' ha_cluster_exporter's
job and are not repeated here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller.corosync.rollout_plan import ActionKind
from controller.decide import ReasonCode
from controller.reconcile import Outcome, PassResult
from controller.source.models import SyncResult
from controller.source.webhooks import Action, Provider

PREFIX = "ha_gitops"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# A stage takes milliseconds (observe, diff) to minutes (settle, a node-by-node rollout).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                 900.0)
# Reasons that hold a revision back (a refusal); the others say "wait" (an election, not the writer).
REFUSAL_REASONS: tuple[str, ...] = tuple(r for r in get_args(ReasonCode)
                                         if r not in ("no-dc", "no-quorum", "not-writer", "first-contact"))
OUTCOMES: tuple[str, ...] = get_args(Outcome)
ROLLOUT_STATES: tuple[str, ...] = get_args(ActionKind)


class AgentMetrics:
    def __init__(self, *, node: str, branch: str, repo: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        r = self.registry = CollectorRegistry()

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        self.info = gauge("agent_info", "This agent: node, followed repository and branch (always 1).",
                          ("node", "repo", "branch"))
        self.info.labels(node, repo, branch).set(1)
        self.stage = Histogram(f"{PREFIX}_pass_stage_duration_seconds",
                               "Time a reconcile pass spent per stage (fetch, observe, load, diff, "
                               "write, ...).", ("stage",), buckets=STAGE_BUCKETS, registry=r)
        self.duration = Histogram(f"{PREFIX}_pass_duration_seconds", "Time one whole reconcile pass took.",
                                  buckets=STAGE_BUCKETS, registry=r)
        self.passes = counter("passes", "Reconcile passes, by outcome.", ("outcome",))
        for o in OUTCOMES:
            self.passes.labels(o)
        self.last_pass = gauge("last_pass_timestamp_seconds", "When the last pass ended (Unix time).")
        self.applied = gauge("applied_revision_info",
                             "The revision the cluster's marker says was applied last (always 1).",
                             ("revision",))
        self.applied_at = gauge("applied_timestamp_seconds",
                                "When the applied revision was written (Unix time).")
        self.pending = gauge("pending_changes",
                             "Changes between git and the live cluster the last pass found.")
        self.drift_detected = counter("drift_detected", "Hand edits of the live CIB detected (once per CIB "
                                                        "version).")
        self.drift_corrected = counter("drift_corrected", "Hand edits put back to what git says.")
        self.drift_uncorrected = gauge("drift_uncorrected", "1 while the last pass saw drift it did not "
                                                            "correct (drift_mode report, or a correction "
                                                            "still to come).")
        self.refusals = counter("refusals", "Passes that refused a revision, by reason.", ("reason",))
        self.refused = gauge("refused", "1 for each reason the last pass refused the revision for.",
                             ("reason",))
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
            self.refused.labels(reason).set(0)
        self.suspended = gauge("suspended", "1 while the agents are suspended (`ha-gitops suspend`).")
        self.pinned = gauge("pinned",
                            "1 while a rollback pins a revision (not applied until a newer commit).")
        self.bad = gauge("bad_revision",
                         "1 while a revision is marked bad (it was rolled back automatically).")
        self.writer = gauge("writer", "1 when this agent is the writer (its node is the DC).")
        self.rollout = gauge("rollout_state", "The corosync.conf rollout's last step on this node (one-hot).",
                             ("state",))
        self._set_rollout("nothing")
        self.source_errors = counter("source_errors", "Failed fetches or checks of the git remote.")
        self.fetches = counter("source_fetches", "git fetches (a clone counts as one).")
        self.checks = counter("source_checks", "Cheap checks of the remote branch (ls-remote) that made a "
                                               "fetch unnecessary.")
        self.last_good_fetch = gauge("source_last_good_fetch_timestamp_seconds",
                                     "When the remote was last read successfully (a fetch, or a check that "
                                     "found the branch unmoved) (Unix time).")
        self.source_up = gauge("source_up", "1 when the last fetch or check of the remote succeeded.")
        self.webhooks = counter("webhooks", "Webhook deliveries, by provider and what was done "
                                            "(trigger, ignore, reject).", ("provider", "action"))
        for p in Provider:
            for a in get_args(Action):
                self.webhooks.labels(p.value, a)
        self.audit_ok = gauge("audit_chain_verified", "1 when the last verify of the audit hash chain found "
                                                      "it intact, 0 when broken or unreadable.")
        self.audit_at = gauge("audit_chain_verified_timestamp_seconds", "When the audit chain was last "
                                                                        "verified (Unix time).")
        self._drift_version: str | None = None

    # ------------------------------------------------------------------ feeding
    def observe_pass(self, result: PassResult) -> None:
        """Everything one pass says: its timings and outcome, the marker it read, its decision."""
        now = self._clock()
        for stage, seconds in result.timings.items():
            self.stage.labels(stage).observe(seconds)
        self.duration.observe(result.duration)
        self.passes.labels(result.outcome).inc()
        self.last_pass.set(now)
        if result.outcome == "error":
            return  # nothing was observed: the gauges keep what the last good pass saw
        self.pending.set(result.changes)
        self.writer.set(1 if result.leader else 0)
        marker = result.marker
        if result.outcome == "applied" and result.revision:
            self._set_applied(result.revision, now)
        elif marker is not None and marker.revision:
            self._set_applied(marker.revision, _timestamp(marker.applied_at))
        if marker is not None:
            self.suspended.set(1 if marker.suspended else 0)
            self.pinned.set(1 if marker.pinned else 0)
            self.bad.set(1 if marker.bad or marker.corosync_bad else 0)
        decision = result.decision
        refused = set(decision.codes) if decision is not None and decision.verdict == "refuse" else set()
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason).set(1 if reason in refused else 0)
        for reason in refused & set(REFUSAL_REASONS):
            self.refusals.labels(reason).inc()
        drift = decision.drift if decision is not None else None
        if drift is not None and decision is not None and decision.basis.cib_version != self._drift_version:
            self._drift_version = decision.basis.cib_version
            self.drift_detected.inc()
        if result.outcome == "drift-corrected":
            self.drift_corrected.inc()
        self.drift_uncorrected.set(1 if drift is not None and result.outcome != "drift-corrected" else 0)
        if result.corosync is not None:
            state = result.corosync.get("action")
            if isinstance(state, str) and state in ROLLOUT_STATES:
                self._set_rollout(state)

    def observe_failed_pass(self) -> None:
        """A pass that raised (no PassResult)."""
        self.passes.labels("error").inc()
        self.last_pass.set(self._clock())

    def observe_sync(self, sync: SyncResult) -> None:
        """One sync of the source (not called for a sync skipped during a retry backoff)."""
        if sync.skipped:
            return
        if sync.checked:
            self.checks.inc()
        elif sync.ok or sync.error:
            self.fetches.inc()
        if sync.ok:
            self.source_up.set(1)
            self.last_good_fetch.set(self._clock())
        else:
            self.source_up.set(0)
            self.source_errors.inc()

    def observe_webhook(self, provider: Provider, action: Action) -> None:
        self.webhooks.labels(provider.value, action).inc()

    def observe_audit_verify(self, ok: bool) -> None:
        self.audit_ok.set(1 if ok else 0)
        self.audit_at.set(self._clock())

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ helpers
    def _set_applied(self, revision: str, at: float | None) -> None:
        self.applied.clear()
        self.applied.labels(revision).set(1)
        if at is not None:
            self.applied_at.set(at)

    def _set_rollout(self, state: str) -> None:
        for s in ROLLOUT_STATES:
            self.rollout.labels(s).set(1 if s == state else 0)


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
