"""One reconcile pass, end to end: desired (load + validate) -> observe -> diff -> apply -> verify -> record.

Every agent runs passes; only the agent on the cluster's DC writes the CIB (the cluster already elects
the DC, we do not build another election). Agents elsewhere observe: they record what the writer did,
from the ha-gitops marker the writer puts in the same atomic patch, so `audit log` on any node shows the
cluster's whole history. The marker also carries the operator's suspend and pin switches.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from lxml import etree
from pydantic import BaseModel, Field

from controller import faults
from controller.audit.models import AuditEvent, CommitInfo, NewEvent
from controller.audit.store import CLUSTER_SCOPE, AuditStore
from controller.cib.document import as_cib, canonical
from controller.cib.edit import with_target_role
from controller.cib.marker import Marker, read_marker
from controller.cib.xml import parse_xml_bytes
from controller.cluster.adapter import LiveCluster
from controller.cluster.cib_writer import (
    ConvergeFailed,
    PatchRejected,
    WriteOutcome,
    cib_version,
    configuration_text,
    pending_changes,
    updated_by,
    write_configuration,
    write_marker_only,
)
from controller.desired.crm import CrmRunner
from controller.desired.findings import Finding
from controller.desired.state import DesiredState, DesiredStateError, load_desired
from controller.desired.substitute import Substitution
from controller.desired.validate import validate_state
from controller.disruption import DisruptionRefused, enforce
from controller.errors import HaGitopsError
from controller.health import HealthProblem, health_problems
from controller.impact import Impact, SimulationError, simulate
from controller.plan import effective_desired, proposed_configuration
from controller.stages import StageTimer

Outcome = Literal["no-change", "applied", "drift-corrected", "drift-reported", "drift-ignored", "refused",
                  "error", "suspended", "pinned", "waiting-for-dc", "no-quorum", "no-source", "rolled-back",
                  "bad-revision"]


class DesiredInput(BaseModel):
    """What a pass works from: a cluster folder on disk and, when it came from git, the commit."""

    folder: Path
    sha: str | None = None
    author: str | None = None
    message: str | None = None
    signature: str = "not-checked"
    refusal: str | None = None  # the source says: never apply this revision (signature policy)

    @property
    def commit(self) -> CommitInfo | None:
        if not self.sha:
            return None
        return CommitInfo(sha=self.sha, author=self.author, message=self.message, signature=self.signature)


class CorosyncStep(Protocol):
    """One pass's share of a corosync.conf rollout on this node (controller/rollout.py)."""

    def step(self, *, state: DesiredState, desired: DesiredInput, revision: str, status: Any, leader: bool,
             trigger: str) -> dict[str, Any]: ...


class PassResult(BaseModel):
    outcome: Outcome
    message: str = ""
    revision: str | None = None
    events: list[int] = Field(default_factory=list)
    changes: int = 0
    leader: bool = False
    dc: str | None = None
    corosync: dict[str, Any] | None = None  # what the corosync.conf rollout did in this pass
    duration: float = 0.0
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds (fetch, load, write, ...)


@dataclass
class Planned:
    """One pass's view of the desired configuration against the live one (computed once per pass)."""

    wanted: etree._Element  # the desired <cib>, substitutions applied
    substituted: list[Any]
    digest: str
    changes: list[Any]
    impact: Future[Impact] | None = None  # the prediction, when it was started early


def revision_key(desired: DesiredInput, state: DesiredState) -> str:
    """What the marker records as the applied revision: the commit, or the folder's digest."""
    return desired.sha or f"digest:{state.digest[:16]}"


class Reconciler:
    def __init__(self, *, node: str, cluster: LiveCluster, store: AuditStore,
                 drift_mode: Literal["correct", "report", "off"] = "correct",
                 substitutions: Sequence[Substitution] = (), shared_audit: bool = False,
                 max_attempts: int = 5, crm: CrmRunner | None = None,
                 observer_crm: CrmRunner | None = None) -> None:
        self.node = node
        # How crm syntax is converted: the DC's agent needs it fast (a warm crmsh); an observer's
        # conversion can wait for the DC's (observer_crm: the same at a lower CPU priority).
        self.crm = crm
        self.observer_crm = observer_crm or crm
        self.cluster = cluster
        self.store = store
        self.drift_mode = drift_mode
        self.substitutions = list(substitutions)
        self.shared_audit = shared_audit
        self.max_attempts = max_attempts
        self.corosync: CorosyncStep | None = None  # set by the agent: the corosync.conf rollout
        self._validated: dict[str, list[Finding]] = {}  # digest -> findings (crm_verify is not free)
        self._last_config: str | None = None
        self._last_dc: str | None = None
        # Called once per pass, as soon as the cluster has been read, with whether this agent writes
        # (None while the cluster has no DC).
        self.on_observed: Callable[[bool | None], None] | None = None

    # ------------------------------------------------------------------ recording
    def _record(self, **fields: Any) -> AuditEvent:
        return self.store.append(NewEvent(**fields))

    def _once(self, key: str, value: str) -> bool:
        """True the first time (key, value) is seen on this node: keeps repeated passes from flooding."""
        if self.store.get_state(key, scope=self.node) == value:
            return False
        self.store.set_state(key, value, scope=self.node)
        return True

    def _record_observed(self, live: etree._Element, marker: Marker,
                         commit: CommitInfo | None = None) -> list[int]:
        """Record a write some agent made (seen through the marker) that this trail does not hold yet.

        Also the recovery path of an agent killed between its write and its record: on restart it finds
        its own marker unrecorded and records it, marked as recovered.
        """
        config_now = configuration_text(live)
        before, self._last_config = self._last_config, config_now
        if not marker.event or self.store.get_state("seen-marker-event", scope=self.node) == marker.event:
            return []
        self.store.set_state("seen-marker-event", marker.event, scope=self.node)
        if self.store.get_state("recorded-marker-event", scope=CLUSTER_SCOPE) == marker.event:
            return []  # a shared database: the writer recorded it already
        ev = self._record(
            node=marker.applied_by or "unknown", kind=marker.kind or "apply", outcome="success",
            summary=f"{marker.kind or 'apply'} of {(marker.revision or '?')[:12]} by {marker.applied_by} "
                    f"(observed on {self.node})",
            commit=commit if commit is not None and commit.sha == marker.revision else (
                CommitInfo(sha=marker.revision) if _is_sha(marker.revision) else None),
            cib_version_after=cib_version(live), config_before=before, config_after=config_now,
            details={"marker_event": marker.event, "observed_by": self.node,
                     "recovered": marker.applied_by == self.node, "applied_at": marker.applied_at})
        self.store.set_state("recorded-marker-event", marker.event, scope=CLUSTER_SCOPE)
        return [ev.id]

    # ------------------------------------------------------------------ desired
    def load(self, desired: DesiredInput, timer: StageTimer | None = None, *, leader: bool = True
             ) -> tuple[DesiredState | None, list[Finding]]:
        """The desired state (validated separately, by _findings), or the findings that stopped it."""
        timer = timer or StageTimer()
        try:
            with timer.stage("load"):
                return load_desired(desired.folder, crm=self.crm if leader else self.observer_crm), []
        except DesiredStateError as exc:
            return None, list(exc.findings)
        except HaGitopsError as exc:
            return None, [Finding(severity="error", file=str(desired.folder), message=str(exc))]

    def _findings(self, state: DesiredState, timer: StageTimer | None = None) -> list[Finding]:
        if state.digest not in self._validated:
            with (timer or StageTimer()).stage("validate"):
                self._validated[state.digest] = validate_state(state)
        return self._validated[state.digest]

    def _observe(self, timer: StageTimer) -> tuple[etree._Element, Marker, Any]:
        with timer.stage("observe"):
            live = self.cluster.read_cib()
            return live, read_marker(live), self.cluster.status()

    # ------------------------------------------------------------------ the pass
    def run_pass(self, desired: DesiredInput | None, *, trigger: str = "manual",
                 force_leader: bool = False, timer: StageTimer | None = None) -> PassResult:
        # Work that does not depend on each other runs side by side, so a push is live sooner: observing
        # the cluster with loading the desired state; predicting the impact with validating it.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ha-gitops-pass") as pool:
            return self._run_pass(desired, trigger=trigger, force_leader=force_leader,
                                  timer=timer or StageTimer(), pool=pool)

    def _run_pass(self, desired: DesiredInput | None, *, trigger: str, force_leader: bool,
                  timer: StageTimer, pool: ThreadPoolExecutor) -> PassResult:
        started = time.monotonic()
        observed = pool.submit(self._observe, timer)
        loaded: tuple[DesiredState | None, list[Finding]] | None = None
        if desired is not None and not desired.refusal:
            # Whether this node is the DC is known once observed; until then, what the last pass saw
            # decides the conversion's CPU priority (nothing else).
            loaded = self.load(desired, timer, leader=force_leader or self._last_dc in (None, self.node))
        live, marker, status = observed.result()
        self._last_dc = status.dc
        leader = force_leader or status.dc == self.node
        if self.on_observed is not None:
            self.on_observed(None if status.dc is None and not force_leader else leader)
        with timer.stage("record"):
            events = self._record_observed(live, marker, desired.commit if desired else None)

        def result(outcome: Outcome, message: str = "", **kw: Any) -> PassResult:
            return PassResult(outcome=outcome, message=message, leader=leader, events=events, dc=status.dc,
                              duration=round(time.monotonic() - started, 3), timings=timer.durations, **kw)

        if desired is None:
            return result("no-source", "no desired state yet")
        if desired.refusal:
            if self._once("refused-revision", desired.sha or ""):
                events.append(self._record(node=self.node, kind="refused", outcome="refused",
                                           commit=desired.commit,
                                           summary="commit refused: " + desired.refusal,
                                           error=desired.refusal, details={"trigger": trigger}).id)
            return result("refused", desired.refusal, revision=desired.sha)

        assert loaded is not None
        state, findings = loaded
        planned: Planned | None = None
        if state is not None:
            try:
                with timer.stage("diff"):
                    planned = self._planned(state, live)
            except Exception:  # not validated yet: whatever broke the diff is diffed (and raised) below
                planned = None
            if planned and planned.changes and leader and status.quorate and not marker.suspended:
                # Likely to be written: predict while crm_verify runs; used only if the state is valid.
                planned.impact = pool.submit(self._timed_predict, live, state, timer)
            findings = self._findings(state, timer)
        errors = [f for f in findings if f.severity == "error"]
        if state is None or errors:
            text = "\n".join(f"{f.where()}: {f.message}" for f in errors)
            key = desired.sha or (state.digest if state else text)
            if self._once("refused-desired", key):
                events.append(self._record(
                    node=self.node, kind="refused", outcome="refused", commit=desired.commit,
                    summary=f"invalid desired state ({len(errors)} error(s)); live cluster untouched",
                    error=text, details={"findings": [f.model_dump() for f in findings],
                                         "trigger": trigger}).id)
            return result("refused", text, revision=desired.sha)

        if planned is None:
            with timer.stage("diff"):
                planned = self._planned(state, live)
        rev = revision_key(desired, state)
        cib_result = self._cib_step(desired, state, rev, live, marker, status, leader, trigger, events,
                                    result, timer, planned)
        if self.corosync is not None and cib_result.outcome not in ("suspended", "pinned") \
                and not marker.suspended and marker.pinned != rev:
            # corosync.conf goes its own way (node by node, coordinated through node attributes).
            with timer.stage("corosync"):
                step = self.corosync.step(state=state, desired=desired, revision=rev, status=status,
                                          leader=leader, trigger=trigger)
            cib_result.corosync = step
            cib_result.events.extend(step.get("events", []))
            if step.get("bad") and cib_result.outcome == "no-change":
                cib_result.outcome = "bad-revision"
                cib_result.message = (f"the corosync.conf of revision {rev[:12]} failed its verify and was "
                                      "rolled back; it is not retried until a newer commit")
        return cib_result

    def _cib_step(self, desired: DesiredInput, state: DesiredState, rev: str, live: etree._Element,
                  marker: Marker, status: Any, leader: bool, trigger: str, events: list[int],
                  result: Any, timer: StageTimer, planned: Planned) -> PassResult:
        wanted, substituted, digest, changes = (planned.wanted, planned.substituted, planned.digest,
                                                planned.changes)
        ignore = state.policy.ignore
        if not changes:
            return result("no-change", revision=rev)
        if marker.suspended:
            return result("suspended", f"{len(changes)} pending change(s); agents suspended "
                          "(`ha-gitops resume` to continue)", revision=rev, changes=len(changes))
        if marker.pinned and marker.pinned == rev:
            return result("pinned", f"revision {rev[:12]} was rolled back; waiting for a newer commit or "
                          "`ha-gitops resume`", revision=rev, changes=len(changes))
        if marker.bad and marker.bad == rev:
            return result("bad-revision", f"revision {rev[:12]} left the cluster unhealthy and was rolled "
                          "back; it is not retried until a newer commit", revision=rev, changes=len(changes))

        drift = marker.digest == digest
        diff_json = [c.model_dump() for c in changes]
        if drift:
            if self.drift_mode == "off":
                return result("drift-ignored", revision=rev, changes=len(changes))
            origin = updated_by(live)
            if (leader or not self.shared_audit) and self._once("drift-version", cib_version(live)):
                events.append(self._record(
                    node=self.node, kind="drift-detected", outcome="success", commit=desired.commit,
                    summary=f"live configuration differs from {rev[:12]}: {len(changes)} object(s), last "
                            f"written by {origin.get('update-user')} via {origin.get('update-client')} on "
                            f"{origin.get('update-origin')}",
                    cib_version_before=cib_version(live), config_before=configuration_text(live),
                    diff=diff_json, details={"origin": origin, "trigger": trigger,
                                             "drift_mode": self.drift_mode}).id)
            if self.drift_mode == "report" or not leader:
                return result("drift-reported", revision=rev, changes=len(changes))
            kind: Literal["apply", "drift-corrected"] = "drift-corrected"
        else:
            if not leader:
                return result("waiting-for-dc", f"the agent on the DC ({status.dc}) applies", revision=rev,
                              changes=len(changes))
            kind = "apply"
        if not status.quorate:
            return result("no-quorum", "the cluster is not quorate: nothing is written", revision=rev,
                          changes=len(changes))

        impact_detail: dict[str, Any] = {}
        quiet = False  # crm_simulate predicts no action at all: nothing to wait for after the write
        # Predict what Pacemaker will do (crm_simulate on the live status); changes from git are held to
        # the disruption policy (a drift correction restores what git already says).
        try:
            impact = planned.impact.result() if planned.impact else self._timed_predict(live, state, timer)
            impact_detail = {"impact": impact.model_dump(mode="json")}
            if kind == "apply":
                enforce(impact, state.policy, datetime.now(UTC))
            quiet = not impact.resources and not impact.node_actions
        except DisruptionRefused as exc:
            if self._once("refused-disruption", rev):
                events.append(self._record(
                    node=self.node, kind="refused", outcome="refused", commit=desired.commit,
                    summary="refused by the disruption policy; live cluster untouched", error=str(exc),
                    diff=diff_json, details={"trigger": trigger, **exc.audit_detail()}).id)
            return result("refused", str(exc), revision=rev, changes=len(changes))
        except SimulationError as exc:
            impact_detail = {"impact_error": str(exc)}
        if kind == "apply":
            stopped = self._stop_removed_first(changes, status, state, live, digest)
            if stopped:
                impact_detail["stopped_first"] = stopped

        event_id = str(uuid.uuid4())

        def new_marker(live_marker: Marker) -> Marker:
            # A newer commit clears a pin and a bad mark; suspend stays the operator's.
            return live_marker.model_copy(update={
                "revision": rev, "digest": digest, "event": event_id, "kind": kind, "applied_by": self.node,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"), "bad": None,
                "pinned": None if live_marker.pinned != rev else live_marker.pinned})

        try:
            with timer.stage("write"):
                outcome = write_configuration(self.cluster, wanted, ignore=ignore, marker=new_marker,
                                              max_attempts=self.max_attempts,
                                              before_patch=lambda _attempt: faults.pause("before-patch"))
        except (PatchRejected, ConvergeFailed, HaGitopsError) as exc:
            events.append(self._record(
                node=self.node, kind="error", outcome="failure", commit=desired.commit,
                summary=f"{kind} of {rev[:12]} failed; live cluster left as it was",
                error=str(exc), cib_version_before=cib_version(live), config_before=configuration_text(live),
                patch=getattr(exc, "patch_xml", None), diff=diff_json,
                details={"trigger": trigger, "attempted": kind}).id)
            return result("error", str(exc), revision=rev, changes=len(changes))
        if not outcome.changed:
            return result("no-change", "converged meanwhile", revision=rev)
        if impact_detail.get("stopped_first"):
            # "Before" is the configuration before this change, not the intermediate stop.
            outcome.config_before, outcome.version_before = configuration_text(live), cib_version(live)
        faults.pause("after-write")
        with timer.stage("record"):
            # The timings so far: what it took from the trigger to the write that made the change live.
            ev = self._record_write(kind, desired, outcome, event_id, trigger,
                                    {**substituted_details(substituted), **impact_detail,
                                     "timings": timer.durations},
                                    origin=updated_by(live) if drift else None)
        events.append(ev.id)
        with timer.stage("verify"):
            problems = self.verify(status, state, wait=not quiet)
        if problems:
            events.append(self._record(
                node=self.node, kind="verify", outcome="failure", commit=desired.commit,
                summary=f"cluster unhealthy after {kind} of {rev[:12]}: "
                        + "; ".join(p.message for p in problems),
                details={"problems": [p.model_dump() for p in problems], "after_event": ev.id}).id)
            if kind == "apply":
                events.append(self._auto_rollback(outcome, rev, desired, ev.id, problems))
                return result("rolled-back", f"unhealthy after the apply ({problems[0].message}); previous "
                              f"configuration restored, {rev[:12]} marked bad", revision=rev,
                              changes=len(outcome.objects))
        return result("applied" if kind == "apply" else "drift-corrected",
                      f"{len(outcome.objects)} object(s) changed", revision=rev, changes=len(outcome.objects))

    # ------------------------------------------------------------------ safety around a write
    def _planned(self, state: DesiredState, live: etree._Element) -> Planned:
        wanted, substituted = effective_desired(state, self.substitutions)
        return Planned(wanted=wanted, substituted=list(substituted), digest=config_digest(wanted),
                       changes=pending_changes(live, wanted, state.policy.ignore))

    def _timed_predict(self, live: etree._Element, state: DesiredState, timer: StageTimer) -> Impact:
        with timer.stage("predict"):
            return self.predict(live, state)

    def predict(self, live: etree._Element, state: DesiredState) -> Impact:
        """What Pacemaker would do with the configuration exactly as it will be written."""
        proposed = proposed_configuration(state, live, self.substitutions)
        return simulate(live, proposed, runner=self.cluster.runner)

    def _stop_removed_first(self, changes: Sequence[Any], status: Any, state: DesiredState,
                            live: etree._Element, digest: str) -> list[str]:
        """Resources removed from git are stopped (target-role Stopped) and waited for before they are
        deleted, so nothing is left running unmanaged or orphaned. The stop is a version-checked write
        that already carries the new digest in the marker, so other agents do not take it for drift."""
        removed = {c.id for c in changes if c.kind == "resource" and c.action == "removed"}
        running = {r.id for r in status.resources if r.active} | {
            r.parent for r in status.resources if r.active and r.parent}
        to_stop = sorted(removed & running)
        if not to_stop:
            return []
        write_configuration(self.cluster, with_target_role(live, to_stop, "Stopped"),
                            marker=lambda m: m.model_copy(update={"digest": digest}),
                            max_attempts=self.max_attempts)
        timeout = state.policy.settle.timeout.total_seconds()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.cluster.status()
            if not any(r.active and (r.id in to_stop or r.parent in to_stop) for r in st.resources):
                return to_stop
            time.sleep(0.5)
        raise HaGitopsError(f"resources {', '.join(to_stop)} did not stop within {timeout:g}s")

    def verify(self, before: Any, state: DesiredState, *, wait: bool = True) -> list[HealthProblem]:
        """Wait until the cluster has settled (bounded by [settle] timeout), then judge its health.

        Without `wait` (the prediction said no resource or node action follows the write) the health is
        judged at once: crm_resource --wait polls every 2 s, which would only delay the next change."""
        if not wait:
            return health_problems(before, self.cluster.status())
        deadline = time.monotonic() + state.policy.settle.timeout.total_seconds()
        settled = False
        while time.monotonic() < deadline:
            # crm_resource --wait can return before the transition for a fresh write has begun: also
            # wait until no resource is in a transient role (Starting, Stopping, ...).
            settled = self.cluster.wait_settled(max(deadline - time.monotonic(), 1))
            after = self.cluster.status()
            if settled and not any(r.role.endswith("ing") for r in after.resources):
                break
            settled = False
            time.sleep(0.3)
        problems = health_problems(before, self.cluster.status())
        if not settled:
            problems.append(HealthProblem(kind="settle", subject="cluster",
                                          message="the cluster did not settle within the settle timeout"))
        return problems

    def _auto_rollback(self, outcome: WriteOutcome, rev: str, desired: DesiredInput, apply_event: int,
                       problems: Sequence[HealthProblem]) -> int:
        wanted = as_cib(parse_xml_bytes(outcome.config_before.encode(), source="configuration before apply"))
        marker_event = str(uuid.uuid4())

        def new_marker(live_marker: Marker) -> Marker:
            return live_marker.model_copy(update={
                "event": marker_event, "kind": "auto-rollback", "applied_by": self.node, "digest": None,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"), "bad": rev})

        back = write_configuration(self.cluster, wanted, marker=new_marker, max_attempts=self.max_attempts)
        ev = self._record_write("auto-rollback", desired, back, marker_event, "verify",
                                {"rolled_back_event": apply_event, "bad_revision": rev,
                                 "problems": [p.model_dump() for p in problems]},
                                summary=f"auto-rollback of {rev[:12]}: previous configuration restored, "
                                        "revision marked bad")
        return ev.id

    def _record_write(self, kind: str, desired: DesiredInput | None, outcome: WriteOutcome, marker_event: str,
                      trigger: str, extra: dict[str, Any], origin: dict[str, Any] | None = None,
                      summary: str | None = None) -> AuditEvent:
        details: dict[str, Any] = {"marker_event": marker_event, "trigger": trigger,
                                   "attempts": outcome.attempts, **extra}
        if outcome.conflicts:
            details["conflicts"] = [c.model_dump() for c in outcome.conflicts]
        if origin:
            details["origin"] = origin
        ev = self._record(
            node=self.node, kind=kind, outcome="success", commit=desired.commit if desired else None,
            summary=summary or f"{kind}: {len(outcome.objects)} object(s) changed"
                    + (f" after {len(outcome.conflicts)} concurrent change(s)" if outcome.conflicts else ""),
            cib_version_before=outcome.version_before, cib_version_after=outcome.version_after,
            config_before=outcome.config_before, config_after=outcome.config_after, patch=outcome.patch_xml,
            diff=[c.model_dump() for c in outcome.objects], duration=outcome.duration, details=details)
        self.store.set_state("recorded-marker-event", marker_event, scope=CLUSTER_SCOPE)
        self.store.set_state("seen-marker-event", marker_event, scope=self.node)
        self._last_config = outcome.config_after
        return ev

    # ------------------------------------------------------------------ rollback
    def rollback(self, event_id: int) -> PassResult:
        """Bring the configuration back to what it was before event `event_id`, and pin its revision."""
        started = time.monotonic()
        target = self.store.get(event_id)
        if not target.config_before:
            raise HaGitopsError(f"event {event_id} ({target.kind}) has no configuration before it to "
                                "return to")
        wanted = as_cib(parse_xml_bytes(target.config_before.encode(), source=f"audit event {event_id}"))
        live = self.cluster.read_cib()
        self._record_observed(live, read_marker(live))
        marker_event = str(uuid.uuid4())
        pinned = read_marker(live).revision if target.commit is None else None
        pin = target.commit.sha if target.commit else pinned

        def new_marker(live_marker: Marker) -> Marker:
            return live_marker.model_copy(update={
                "event": marker_event, "kind": "rollback", "applied_by": self.node, "digest": None,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"), "pinned": pin})

        outcome = write_configuration(self.cluster, wanted, marker=new_marker, max_attempts=self.max_attempts)
        if not outcome.changed:
            # Already there: still pin, so the agent does not re-apply the rolled-back revision.
            write_marker_only(self.cluster, new_marker)
        ev = self._record_write("rollback", None, outcome, marker_event, "rollback",
                                {"target_event": event_id, "pinned": pin},
                                summary=f"rollback to the configuration before event {event_id}"
                                        + (f"; {pin[:12]} pinned" if pin else ""))
        return PassResult(outcome="rolled-back", revision=pin, events=[ev.id], changes=len(outcome.objects),
                          duration=round(time.monotonic() - started, 3),
                          message=f"configuration before event {event_id} restored"
                                  + (f"; revision {pin[:12]} pinned until a newer commit or "
                                     "`ha-gitops resume`" if pin else ""))


def config_digest(cib: etree._Element) -> str:
    """Identity of a desired configuration's content (ids and order included, marker excluded)."""
    conf = cib.find("configuration")
    return hashlib.sha256(canonical(conf).encode() if conf is not None else b"").hexdigest()[:16]


def substituted_details(subs: Sequence[Any]) -> dict[str, Any]:
    return {"substituted": [s.model_dump() for s in subs]} if subs else {}


def _is_sha(value: str | None) -> bool:
    return bool(value) and len(value or "") >= 7 and all(c in "0123456789abcdef" for c in (value or ""))
