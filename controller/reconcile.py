"""One reconcile pass: desired (load + validate) -> observe -> decide -> execute (write, verify, record).

The decision is `controller.decide.decide` (pure): this module reads what it needs, calls it once, and
carries out what it returned, nothing else. Every agent runs passes; only the agent on the cluster's DC
writes the CIB (the cluster already elects the DC, we do not build another election). Agents elsewhere
observe: they record what the writer did, from the ha-gitops marker the writer puts in the same atomic
patch, so `audit log` on any node shows the cluster's whole history. The marker also carries the
operator's suspend and pin switches.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from lxml import etree
from pydantic import BaseModel, Field

from controller import faults
from controller.audit.models import CommitInfo, EventKind, NewEvent
from controller.audit.store import CLUSTER_SCOPE, AuditError, AuditStore
from controller.cib.document import as_cib
from controller.cib.edit import with_target_role
from controller.cib.marker import (
    HISTORY_MAX,
    HistoryEntry,
    Marker,
    announce,
    history_entries,
    previous_event,
    previous_write,
    read_marker,
)
from controller.cib.xml import parse_xml_bytes
from controller.cluster.adapter import LiveCluster
from controller.cluster.cib_writer import (
    QUORUM_ONLY,
    ConvergeFailed,
    LandedLost,
    LostLeadership,
    PatchRejected,
    SkipReason,
    WriteGuard,
    WriteOutcome,
    cib_version,
    claim_generation,
    configuration_text,
    pending_changes,
    updated_by,
    write_configuration,
    write_marker_only,
)
from controller.cluster.fencing import FenceEvent, fence_history
from controller.cluster.models import ClusterStatus
from controller.cluster.secret_store import LocalSecretStore
from controller.cluster.simulate import simulate
from controller.corosync.rollout_plan import text_digest
from controller.decide import DecideInput, Decision, Reason, Role, decide, decide_rollback, stale_plan
from controller.desired.crm import CrmRunner
from controller.desired.findings import Finding
from controller.desired.load import decrypt_cached, load_desired
from controller.desired.secret_gate import (
    ATTR_SECRETS,
    error_value,
    file_digest,
    node_signals,
    set_signal,
    store_digest,
)
from controller.desired.state import DesiredState, DesiredStateError
from controller.desired.substitute import Substitution
from controller.desired.validate import validate_state
from controller.errors import HaGitopsError
from controller.failures import Failure, Stage
from controller.gaps import Gap, Missed, plan_backfill
from controller.health import HealthProblem
from controller.impact import Impact, SimulationError
from controller.notifications import NotifyTarget, route
from controller.plan import CibPlan, cib_plan, config_digest, proposed_configuration
from controller.secrets.model import SECRETS_FILE, store_sign
from controller.stages import StageTimer
from controller.verify import ChangeScope, VerifyEvidence, VerifyVerdict, change_scope, cluster_whole, judge

Outcome = Literal["no-change", "applied", "drift-corrected", "drift-reported", "drift-ignored", "refused",
                  "error", "suspended", "pinned", "waiting-for-dc", "no-quorum", "no-source", "rolled-back",
                  "bad-revision", "waiting-for-adopt", "waiting-for-secrets"]
# The pass outcome a refusal is reported as, by its most telling reason.
_REFUSED_AS: list[tuple[str, Outcome]] = [("suspended", "suspended"), ("pinned", "pinned"),
                                          ("bad-revision", "bad-revision")]
_WAIT_AS: dict[str, Outcome] = {"no-quorum": "no-quorum", "no-dc": "waiting-for-dc",
                                "not-writer": "waiting-for-dc", "no-source": "no-source",
                                "first-contact": "waiting-for-adopt",
                                "secrets-pending": "waiting-for-secrets"}
# Summaries of refusal events, by first reason (`audit log` reads them).
_REFUSAL_SUMMARY = {
    "invalid": "invalid desired state ({n} error(s)); live cluster untouched",
    "signature": "commit refused: {message}",
    "policy": "refused by the disruption policy; live cluster untouched",
    "impact-unknown": "refused: the impact could not be predicted; live cluster untouched",
    "unsupported": "refused: {message}",
    "stale-plan": "saved plan refused: {message}",
    "secrets": "refused: {message}",
}
Validator = Callable[[DesiredState], list[Finding]]
RECHECK_WHOLE_FOR = 8.0  # seconds the cluster stays whole before an inconclusive verify is judged again
log = logging.getLogger("ha-gitops.pass")
Details = dict[str, object]  # an audit event's details: JSON values


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

    def step(self, *, state: DesiredState, desired: object, revision: str, status: ClusterStatus,
             leader: bool, trigger: str) -> StepOutcome: ...


class StepOutcome(Protocol):
    """What a rollout step reports back to the pass (controller.rollout.StepResult)."""

    events: list[int]
    error: str | None
    bad: bool


class PassResult(BaseModel):
    outcome: Outcome
    message: str = ""
    revision: str | None = None
    events: list[int] = Field(default_factory=list)
    changes: int = 0
    leader: bool = False
    dc: str | None = None
    corosync: dict[str, object] | None = None  # what the corosync.conf rollout did in this pass
    duration: float = 0.0
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds (fetch, load, write, ...)
    decision: Decision | None = None
    failure: Failure | None = None  # the stage that failed, and why
    # The ha-gitops marker the pass read from the live CIB (for metrics; not part of the printed result).
    marker: Marker | None = Field(None, exclude=True)


class PendingCheck(BaseModel):
    """A write under verify: what a re-check (after an inconclusive verify) needs to judge and roll back."""

    kind: Literal["apply", "drift-corrected"]
    revision: str
    marker_event: str
    event: int  # the write's audit event
    commit: CommitInfo | None = None
    config_before: str
    evidence: VerifyEvidence
    history_before: list[FenceEvent] | None = None  # the fencing the cluster remembered before the write
    settle: float = 120.0  # [settle] timeout: how long a re-check waits for the cluster to settle


def revision_key(desired: DesiredInput, state: DesiredState | None) -> str:
    """What the marker records as the applied revision: the commit, or the folder's digest."""
    if desired.sha:
        return desired.sha
    return f"digest:{state.digest[:16]}" if state is not None else f"folder:{desired.folder}"


class PassFailed(HaGitopsError):
    """A stage of a pass failed; the audit event recording it is already written."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class Reconciler:
    def __init__(self, *, node: str, cluster: LiveCluster, store: AuditStore,
                 drift_mode: Literal["correct", "report", "off"] = "correct",
                 substitutions: Sequence[Substitution] = (), shared_audit: bool = False,
                 max_attempts: int = 5, crm: CrmRunner | None = None,
                 observer_crm: CrmRunner | None = None, validator: Validator | None = None,
                 corosync_path: str = "/etc/corosync/corosync.conf",
                 age_identity: Path | None = None, secret_store: LocalSecretStore | None = None) -> None:
        self.node = node
        self.age_identity = age_identity  # decrypts secrets.age (controller/secrets/)
        self.secret_store = secret_store or LocalSecretStore()  # this node's Pacemaker secrets store
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
        self.validator: Validator = validator or validate_state
        self.corosync_path = corosync_path
        self.corosync: CorosyncStep | None = None  # set by the wiring: the corosync.conf rollout
        self._fences: Future[list[FenceEvent] | None] | None = None  # fence history read before a write
        self._outbox: list[tuple[NewEvent, list[str]]] = []  # events the store refused (and whom to tell)
        # `[[notify]]` targets: an event this node records as the writer (or operator) is queued for them;
        # an observer's copy of another node's event is not (one message per event cluster-wide).
        self.notify_targets: Sequence[NotifyTarget] = ()
        self._notifying = True  # False during an observer's pass
        self._own_event: str | None = None  # the marker event of this node's last write
        self._last_write_seen: tuple[str | None, etree._Element | None] = (None, None)
        self._history_seen: tuple[str | None, str | None] = (None, None)  # the marker last recorded from
        self._left_to_judge: set[str] = set()  # announced refusals this node's own pass records
        self._validated: dict[str, list[Finding]] = {}  # digest -> findings (crm_verify is not free)
        self._last_config: str | None = None
        self._last_dc: str | None = None
        # Who may write in this pass, checked right before every patch (cib_writer.WriteGuard): the
        # agent only while its node is the quorate DC; an operator's verb (role "operator") only while
        # the cluster is quorate. Set per pass, once the role is known; the strictest until then.
        self._guard = WriteGuard(node=node)
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        # Called once per pass, as soon as the cluster has been read, with whether this agent writes
        # (None while the cluster has no DC).
        self.on_observed: Callable[[bool | None], None] | None = None
        # Called when this node has just become the writer: the source fetched afresh (the agent's).
        self.refresh_source: Callable[[], DesiredInput | None] | None = None
        # What an inconclusive verify's re-check waits for, in words (`status` shows it); None: nothing.
        self.verify_waiting: str | None = None
        self._whole_since: float | None = None  # when a re-check first found the cluster whole

    # ------------------------------------------------------------------ recording
    def _record(self, *, notify: bool | None = None, **fields: Any) -> int:
        """Append an event; its id, or 0 when the store failed and the event waits in the outbox.

        Events are never dropped: one the store refuses (full disk, read-only file) is kept and appended,
        in order, before anything else once the store works again. `notify`: whether this node tells the
        `[[notify]]` targets (default: unless this is an observer's pass)."""
        new = NewEvent(**fields)
        tell = self._notifying if notify is None else notify
        keys = route(new.kind, new.outcome, self.notify_targets) if tell else []
        try:
            self.flush_outbox()
            return self.store.append(new, notify=keys).id
        except AuditError as exc:
            self._outbox.append((new, keys))
            log.error("audit trail: %s; %d event(s) kept until it can be written", exc, len(self._outbox))
            return 0

    def flush_outbox(self) -> None:
        """Append the events the store refused earlier (raises AuditError while it still refuses)."""
        while self._outbox:
            new, keys = self._outbox[0]
            self.store.append(new, notify=keys)
            self._outbox.pop(0)

    def _store_ready(self, desired: DesiredInput | None) -> None:
        """Nothing is written to the CIB that cannot be recorded: the store must take a write first."""
        try:
            self.flush_outbox()
            self.store.probe()
        except AuditError as exc:
            raise PassFailed(Failure.of("record", f"the audit trail cannot be written ({exc}); nothing is "
                                        "written to the CIB until it can")) from exc

    def _once(self, key: str, value: str) -> bool:
        """True the first time (key, value) is seen on this node: keeps repeated passes from flooding."""
        if self.store.get_state(key, scope=self.node) == value:
            return False
        self.store.set_state(key, value, scope=self.node)
        return True

    def _failed(self, stage: Stage, message: str, *, desired: DesiredInput | None, summary: str,
                cause: BaseException | None = None, what: str = "the write", commit: CommitInfo | None = None,
                **fields: Any) -> PassFailed:
        """Record a failed stage (stage + reason in the event) and return the error to raise.

        A write the guard skipped (`cause` LostLeadership) is recorded as exactly that: reason
        LostQuorum / NotWriter, what the guard saw, and a summary saying `what` was not written."""
        skipped = cause if isinstance(cause, LostLeadership) else None
        failure = Failure.of(stage, message, reason=skipped.reason if skipped else None)
        details = {**fields.pop("details", {}), **(skipped.details() if skipped else {}), **failure.details()}
        if isinstance(skipped, LandedLost):
            fields["cib_version_after"] = skipped.version_after
            summary = f"{what} lost the race: written as {_RACED_WHY[skipped.reason]}"
        elif skipped is not None:
            fields.pop("patch", None)  # nothing was patched: no patch in the trail to mistake for one
            summary = f"{what} skipped: {_SKIPPED_WHY[skipped.reason]}; nothing written"
        failure.event = self._record(node=self.node, kind="error", outcome="failure",
                                     commit=desired.commit if desired else commit, summary=summary,
                                     error=message, details=details, **fields) or None
        return PassFailed(failure)

    def _remember_write(self, marker_event: str | None, config: str) -> None:
        """The configuration the marker's event left: what drift is judged against while the head is held."""
        if marker_event:
            self.store.set_state("last-write", {"event": marker_event, "config": config}, scope=self.node)
            self._last_write_seen = (None, None)

    def _last_write(self, marker: Marker) -> etree._Element | None:
        # Read and parsed once per marker event, not on every pass (it is a whole configuration).
        if not marker.event:
            return None
        if self._last_write_seen[0] != marker.event:
            saved = self.store.get_state("last-write", scope=self.node) or {}
            config = saved.get("config") if saved.get("event") == marker.event else None
            self._last_write_seen = (marker.event, config and parse_xml_bytes(
                config.encode(), source="the configuration of the last write"))
        found = self._last_write_seen[1]
        return copy.deepcopy(found) if found is not None else None

    def _record_observed(self, live: etree._Element, marker: Marker,
                         commit: CommitInfo | None = None) -> list[int]:
        """Record the writes some agent made (seen through the marker and its history) that this trail does
        not hold yet, oldest first: the marker's own write as observed, earlier ones as backfilled (this
        node was away, or two writes came between two passes); a `gap` event when the history no longer
        reaches back to the last write this trail holds.

        Also the recovery path of an agent killed between its write and its record: on restart it finds
        its own marker unrecorded and records it, marked as recovered.
        """
        config_now = configuration_text(live)
        before, self._last_config = self._last_config, config_now
        key = (marker.event, marker.history)
        if not marker.event or key == self._history_seen:
            return []
        ids = {e.event for e in history_entries(marker)} | {marker.event}
        known = self.store.held(ids) | {e.event_id for e, _ in self._outbox}
        if self._own_event:
            known.add(self._own_event)
        last_seen = self.store.get_state("seen-marker-event", scope=self.node)
        if before is None:
            # Just started: the configuration the last write it saw left (kept in the store), if that
            # write is the one just before the marker's (so `rollback` of it works here too).
            saved = self.store.get_state("last-write", scope=self.node) or {}
            if saved.get("event") and saved.get("event") == previous_write(marker, marker.event):
                before = saved.get("config")
        plan = plan_backfill(marker, known, node=self.node, last_seen=last_seen, last_seen_at=None,
                             now=self.now(), shared=self.shared_audit)
        recorded: list[int] = []
        if plan.gap is not None:
            recorded.append(self._record_gap(plan.gap, marker))
        judging = False
        for missed in plan.record:
            if self._judges_itself(missed.entry, commit):
                judging = True  # looked at again next pass: recorded from the history if still missing
                continue
            recorded.append(self._record_missed(missed, marker, live, before, config_now, commit))
            if missed.entry.writes_configuration:
                # After a write it did not see live, what this node last saw is not the configuration
                # before the next one (a refusal or a switch between changes no configuration).
                before = None
        if last_seen != marker.event:
            self.store.set_state("seen-marker-event", marker.event, scope=self.node)
            if marker.event != self._own_event:
                self._remember_write(marker.event, config_now)
        if not plan.deferred and not judging:
            self._history_seen = key
        return [i for i in recorded if i]

    def _judges_itself(self, entry: HistoryEntry, commit: CommitInfo | None) -> bool:
        """A refusal of the revision this pass is about to judge, for reasons every node judges (invalid,
        signature): this node's own record of it (the same event id, with the findings) is the better
        one. Left once; recorded from the history afterwards if the pass did not record it."""
        if entry.kind != "refused" or commit is None or entry.revision != commit.sha \
                or not set(entry.codes) <= _JUDGED_BY_EVERY_NODE or entry.event in self._left_to_judge:
            return False
        self._left_to_judge.add(entry.event)
        return True

    def _record_missed(self, missed: Missed, marker: Marker, live: etree._Element, before: str | None,
                       config_now: str, commit: CommitInfo | None) -> int:
        e = missed.entry
        rev = e.revision
        kind = e.kind if e.kind in _KINDS else "apply"
        details: Details = {"marker_event": e.event, "marker_prev": missed.prev, "observed_by": self.node,
                            "recovered": missed.recovered,
                            "applied_at": e.time.isoformat() if e.time else marker.applied_at}
        if kind != e.kind:
            details["marker_kind"] = e.kind
        info = commit if commit is not None and commit.sha == rev else (
            CommitInfo(sha=rev) if rev and _is_sha(rev) else None)
        what = f"{e.kind}" + (f" of {rev[:12]}" if rev and kind not in ("suspend", "resume") else "")
        outcome = e.outcome or "success"
        if e.outcome is not None:
            # A decision the writer announced through the marker history (a refusal, a failed verify):
            # its reasons are in the writer's trail, under the same event id.
            details["codes"] = list(e.codes)
            why = f" ({', '.join(e.codes)})" if e.codes else ""
            what = (f"revision {(rev or '-')[:12]} refused{why}" if kind == "refused" else
                    f"{kind} of {(rev or '-')[:12]}: {e.outcome}{why}")
        if missed.current:
            # The marker's own write left the live configuration; a suspend or resume after it changed
            # no configuration.
            configs: dict[str, Any] = {"cib_version_after": cib_version(live), "config_before": before,
                                       "config_after": config_now} if e.event == marker.event else {}
            return self._record(
                event_id=e.event, node=e.node or "unknown", kind=kind, outcome=outcome, commit=info,
                summary=f"{what} by {e.node} (observed on {self.node})", details=details, notify=False,
                **configs)
        # An earlier write: only what the history keeps of it (no configuration, so no rollback to it).
        at = f" at {e.time:%Y-%m-%d %H:%M:%S}" if e.time else ""
        return self._record(
            event_id=e.event, node=e.node or "unknown", kind=kind, outcome=outcome, commit=info, notify=False,
            summary=f"{what} by {e.node}{at} (backfilled on {self.node} from the CIB marker history)",
            details={**details, "backfilled": True, "source": "cib-marker-history",
                     **({"digest": e.digest} if e.digest else {})})

    def _record_gap(self, gap: Gap, marker: Marker) -> int:
        since = gap.since
        if since is None and gap.after_event:
            held = self.store.by_event_id(gap.after_event)
            if held is not None:
                since = _time_of(held.details.get("applied_at")) or held.time
        span = (f"between {since:%Y-%m-%d %H:%M:%S} and " if since else "before ") + (
            f"{gap.until:%Y-%m-%d %H:%M:%S} UTC" if gap.until else "the oldest write it names")
        return self._record(
            # One gap event per node and gap, however often it is found.
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ha-gitops:gap:{self.node}:{gap.before_event}")),
            node=self.node, kind="gap", outcome="failure",
            summary=f"writes {span} are missing from this trail: this node was away and the CIB marker "
                    f"history (the last {HISTORY_MAX}) no longer names them",
            details={"since": since.isoformat() if since else None,
                     "until": gap.until.isoformat() if gap.until else None,
                     "after_event": gap.after_event, "before_event": gap.before_event,
                     "lost_event": gap.lost_event, "source": "cib-marker-history",
                     "history": len(history_entries(marker))})

    # ------------------------------------------------------------------ desired
    def load(self, desired: DesiredInput, timer: StageTimer | None = None, *, leader: bool = True
             ) -> tuple[DesiredState | None, list[Finding]]:
        """The desired state (validated separately, by _findings), or the findings that stopped it."""
        timer = timer or StageTimer()
        try:
            with timer.stage("load"):
                return load_desired(desired.folder, crm=self.crm if leader else self.observer_crm,
                                    identity=self.age_identity), []
        except DesiredStateError as exc:
            # "cannot decrypt" names this node: the writer's refusal is read on every node's trail
            return None, [f.model_copy(update={"message": f"node {self.node}: {f.message}"})
                          if f.file.endswith(SECRETS_FILE) else f for f in exc.findings]
        except HaGitopsError as exc:
            return None, [Finding(severity="error", file=str(desired.folder), message=str(exc))]

    def _findings(self, state: DesiredState, timer: StageTimer | None = None) -> list[Finding]:
        cached = self._validated.get(state.digest)
        if cached is not None:
            return cached
        with (timer or StageTimer()).stage("validate"):
            findings = self.validator(state)
        # A valid state stays valid (crm_verify is not free); an invalid one is checked again, since what
        # it lacked (an agent installed meanwhile on the node) may be there now.
        if not any(f.severity == "error" for f in findings):
            self._validated[state.digest] = findings
        return findings

    def _observe(self, timer: StageTimer) -> tuple[etree._Element, Marker, ClusterStatus]:
        with timer.stage("observe"):
            live = self.cluster.read_cib()
            return live, read_marker(live), self.cluster.status()

    # ------------------------------------------------------------------ the pass
    def run_pass(self, desired: DesiredInput | None, *, trigger: str = "manual",
                 role: Role | None = None, timer: StageTimer | None = None,
                 expect: Decision | None = None, dry_run: bool = False, adopt: bool = False) -> PassResult:
        """One pass. `role`: "operator" for a CLI verb (writes from this node), else the DC's agent is the
        writer. `expect`: a saved plan (`apply --plan`) the decision must equal. `dry_run`: decide only
        (what `plan` prints), record and write nothing. `adopt`: `ha-gitops adopt` confirmed the first
        write (controller.decide's first-contact gate)."""
        # Work that does not depend on each other runs side by side, so a push is live sooner: observing
        # the cluster with loading the desired state; predicting the impact with validating it.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ha-gitops-pass") as pool:
            return self._run_pass(desired, trigger=trigger, role=role, timer=timer or StageTimer(), pool=pool,
                                  expect=expect, dry_run=dry_run, adopt=adopt)

    def _run_pass(self, desired: DesiredInput | None, *, trigger: str, role: Role | None,
                  timer: StageTimer, pool: ThreadPoolExecutor, expect: Decision | None,
                  dry_run: bool, adopt: bool = False) -> PassResult:
        started = time.monotonic()
        self._fences = None  # read afresh by each pass that may write
        self._notifying = True  # this node's own errors, until the pass knows its role
        observed = pool.submit(self._observe, timer)
        loaded: tuple[DesiredState | None, list[Finding]] = (None, [])
        if desired is not None and not desired.refusal:
            # Whether this node is the DC is known once observed; until then, what the last pass saw
            # decides the conversion's CPU priority (nothing else).
            loaded = self.load(desired, timer,
                               leader=role == "operator" or self._last_dc in (None, self.node))
        try:
            live, marker, status = observed.result()
        except HaGitopsError as exc:
            if dry_run:
                raise
            # Recorded once per distinct error: a cluster that stays unreachable is one event, not one
            # per pass.
            failure = Failure.of("observe", str(exc))
            if self._once("observe-failed", str(exc)):
                failure = self._failed("observe", str(exc), desired=desired,
                                       summary="the live cluster could not be read; nothing written").failure
            return PassResult(outcome="error", message=str(exc), failure=failure,
                              events=[failure.event] if failure.event else [],
                              duration=round(time.monotonic() - started, 3), timings=timer.durations)
        if self.store.get_state("observe-failed", scope=self.node) is not None:
            self.store.delete_state("observe-failed", scope=self.node)
        # Becoming the writer: a takeover (or this agent's start on the DC). A pass during the election,
        # with no DC, does not make the next one forget who wrote before.
        became_writer = status.dc == self.node and self._last_dc != self.node and role is None
        if status.dc is not None:
            self._last_dc = status.dc
        role = role or ("writer" if status.dc == self.node else "observer")
        self._notifying = role != "observer"
        if became_writer and not dry_run:
            try:
                before, after = claim_generation(self.cluster, guard=WriteGuard(node=self.node))
                log.info("became the writer: CIB %s -> %s, so this partition's configuration wins a "
                         "rejoin over a write a lost partition may have landed", before, after)
            except HaGitopsError as exc:  # not the quorate DC after all: the pass's own guard says so
                log.warning("became the writer, but could not raise the CIB epoch: %s", exc)
        if became_writer and self.refresh_source is not None and not dry_run:
            # Taking over from another DC: write the newest revision, never a cached older one.
            fresh = self.refresh_source()
            if fresh is not None and desired is not None and fresh.sha != desired.sha:
                desired = fresh
                loaded = self.load(desired, timer) if not desired.refusal else (None, [])
        leader = role in ("writer", "operator")
        self._guard = QUORUM_ONLY if role == "operator" else WriteGuard(node=self.node)
        if self.on_observed is not None and not dry_run:
            self.on_observed(None if status.dc is None and role != "operator" else leader)
        events: list[int] = []
        if not dry_run:
            with timer.stage("record"):
                events = self._record_observed(live, marker, desired.commit if desired else None)

        state, findings = loaded
        store_signs = self._secrets(state, desired, live, events, dry_run=dry_run)
        cib: CibPlan | None = None
        impact_future: Future[Impact] | None = None
        if state is not None:
            try:
                with timer.stage("diff"):
                    cib = cib_plan(state, live, self.substitutions)
            except HaGitopsError as exc:  # validation below names what broke the diff
                findings = [*findings, Finding(severity="error", file=str(state.cib_file), message=str(exc))]
            if cib is not None and cib.changes and role != "observer":
                # Likely to be written: predict while crm_verify runs; used only if the state is valid.
                impact_future = pool.submit(self._timed_predict, live, state, timer)
                # What fencing the cluster remembers before the write, read meanwhile: a fence during
                # verify is then named (and the write does not wait for the read). A plan writes nothing.
                if not dry_run:
                    self._fences = pool.submit(fence_history, self.cluster.runner)
            findings = [*findings, *self._findings(state, timer)]
        impact: Impact | None = None
        impact_error: str | None = None
        if impact_future is not None:
            try:
                impact = impact_future.result()
            except (SimulationError, HaGitopsError) as exc:
                impact_error = str(exc)
        live_corosync = self.cluster.read_file(self.corosync_path) if state is not None else None
        rev = revision_key(desired, state) if desired is not None else None
        decision = decide(DecideInput(
            revision=rev, state=state, findings=findings, cib=cib, live=live, status=status, marker=marker,
            now=self.now(), live_corosync=live_corosync, impact=impact, impact_error=impact_error,
            source_refusal=desired.refusal if desired else None, last_write=self._last_write(marker),
            drift_mode=self.drift_mode, role=role,
            can_rollout=self.corosync is not None or role == "observer", adopt=adopt,
            secret_store=store_signs))
        if expect is not None:
            moved = stale_plan(expect, decision)
            if moved:
                decision = decision.model_copy(update={"verdict": "refuse", "rollout": False, "reasons": [
                    Reason(code="stale-plan", message="the cluster or the revision moved since the plan was "
                           "made: " + "; ".join(moved))]})

        def result(outcome: Outcome, message: str = "", **kw: Any) -> PassResult:
            return PassResult(outcome=outcome, message=message, leader=leader, events=events, dc=status.dc,
                              duration=round(time.monotonic() - started, 3), timings=timer.durations,
                              revision=rev, decision=decision, marker=marker, **kw)

        if dry_run:
            return result(_dry_outcome(decision), _message(decision), changes=_count(decision))
        assert desired is not None or decision.verdict == "wait"
        try:
            rechecked = self._recheck(marker, status, events, result) if role == "writer" else None
            if rechecked is not None:
                return rechecked
            res = self._execute(decision, desired, state, cib, live, marker, status, role, trigger, events,
                                result, timer)
        except PassFailed as exc:
            return result("error", str(exc), failure=exc.failure, changes=_count(decision))
        if decision.rollout and self.corosync is not None and state is not None and desired is not None \
                and rev is not None and res.outcome not in ("error", "rolled-back"):
            # corosync.conf goes its own way (node by node, coordinated through node attributes), and only
            # for a revision the decision lets through: never for a refused one.
            with timer.stage("rollout"):
                step = self.corosync.step(state=state, desired=desired, revision=rev, status=status,
                                          leader=leader, trigger=trigger)
            res.corosync = step.model_dump() if isinstance(step, BaseModel) else None
            res.events.extend(step.events)
            if step.error and res.failure is None:
                res.failure = Failure.of("rollout", step.error,
                                         event=step.events[-1] if step.events else None)
            if step.bad and res.outcome == "no-change":
                res.outcome = "bad-revision"
                res.message = (f"the corosync.conf of revision {rev[:12]} failed its verify and was "
                               "rolled back; it is not retried until a newer commit")
        res.timings = timer.durations
        return res

    # ------------------------------------------------------------------ secrets
    def _secrets(self, state: DesiredState | None, desired: DesiredInput | None, live: etree._Element,
                 events: list[int], *, dry_run: bool) -> dict[tuple[str, str], str | None] | None:
        """Every node's own step, writer or not, before the decision: make this node's Pacemaker secrets
        store hold the revision's values, then say so in its node attribute (controller.desired.
        secret_gate), or say it cannot decrypt. Returns the store as it was found (for the plan)."""
        if state is None:
            if desired is not None and not dry_run:
                self._signal_undecryptable(desired, live)
            return None
        if not state.secret_params or not state.secrets_decrypted:
            return None
        keys = [(p.resource, p.param) for p in state.secret_params]
        try:
            found = self.secret_store.signs(keys)
        except HaGitopsError as exc:
            log.error("secrets store: %s", exc)
            return None
        if dry_run:
            return found
        want = store_digest(state.secret_params)
        signalled = node_signals(live).get(self.node)
        wrong = [p for p in state.secret_params
                 if found[(p.resource, p.param)] != store_sign(state.secret_values[p.name])]
        drift = bool(wrong) and signalled == want  # it held these values already: edited by hand since
        if read_marker(live).suspended or (drift and self.drift_mode != "correct"):
            # suspended: nothing is written; drift_mode report/off: drift is recorded (report) only
            if drift and self.drift_mode == "report" and self._once(
                    "secrets-drift", ",".join(f"{p.resource}.{p.param}" for p in wrong) + f":{want}"):
                events.append(self._record(
                    node=self.node, kind="drift-detected", outcome="success",
                    commit=desired.commit if desired else None,
                    summary="this node's secrets store differs from secrets.age ("
                            + ", ".join(f"{p.resource}.{p.param}" for p in wrong) + "): not corrected",
                    details={"secrets": [{"resource": p.resource, "param": p.param, "name": p.name,
                                          "fingerprint": p.fingerprint} for p in wrong]}))
            return found
        try:
            for p in wrong:
                self.secret_store.write(p.resource, p.param, state.secret_values[p.name])
            if want is not None and signalled != want:
                self.cluster.set_node_attribute(self.node, ATTR_SECRETS, want)
                set_signal(live, self.node, want)  # this pass's decision sees it
        except HaGitopsError as exc:
            log.error("secrets store: %s", exc)
            return found
        if wrong:
            names = ", ".join(f"{p.resource}.{p.param}" for p in wrong)
            events.append(self._record(
                node=self.node, kind="drift-corrected" if drift else "secrets-stored", outcome="success",
                commit=desired.commit if desired else None,
                summary=(f"this node's secrets store differed from secrets.age ({names}): corrected" if drift
                         else f"this node's secrets store now holds {names}"),
                details={"secrets": [{"resource": p.resource, "param": p.param, "name": p.name,
                                      "fingerprint": p.fingerprint} for p in wrong],
                         "store": str(self.secret_store.root), "drift": drift}))
        return found

    def _signal_undecryptable(self, desired: DesiredInput, live: etree._Element) -> None:
        """This node could not load the revision because it cannot decrypt secrets.age: tell the writer,
        which refuses the revision whole (once per secrets.age)."""
        path = desired.folder / SECRETS_FILE
        if self.age_identity is None or not path.is_file():
            return
        try:
            data = path.read_bytes()
        except OSError:
            return
        if self.age_identity.is_file():
            try:
                decrypt_cached(self.age_identity, data.decode("utf-8", errors="replace"), str(path))
                return  # it decrypts: the revision failed for another reason
            except HaGitopsError as exc:
                cause = "not-recipient" if "not one of its recipients" in str(exc) else "other"
        else:
            cause = "no-identity"
        value = error_value(file_digest(data), cause)
        if node_signals(live).get(self.node) != value:
            try:
                self.cluster.set_node_attribute(self.node, ATTR_SECRETS, value)
            except HaGitopsError as exc:
                log.error("secrets: cannot signal that this node cannot decrypt %s: %s", path, exc)

    # ------------------------------------------------------------------ carrying the decision out
    def _execute(self, decision: Decision, desired: DesiredInput | None, state: DesiredState | None,
                 cib: CibPlan | None, live: etree._Element, marker: Marker, status: ClusterStatus,
                 role: Role, trigger: str, events: list[int], result: Callable[..., PassResult],
                 timer: StageTimer) -> PassResult:
        leader = role in ("writer", "operator")
        rev = decision.plan.revision or ""
        changes = _count(decision)
        if decision.drift is not None and (leader or not self.shared_audit) \
                and self._once("drift-version", cib_version(live)):
            origin = updated_by(live)
            events.append(self._record(
                node=self.node, kind="drift-detected", outcome="success",
                commit=desired.commit if desired else None,
                summary=f"live configuration differs from {_target(decision, rev)}: "
                        f"{len(decision.drift.changes)} object(s), last written by "
                        f"{origin.get('update-user')} via {origin.get('update-client')} on "
                        f"{origin.get('update-origin')}",
                cib_version_before=cib_version(live), config_before=configuration_text(live),
                diff=[c.model_dump() for c in decision.drift.changes],
                details={"origin": origin, "trigger": trigger, "drift_mode": self.drift_mode,
                         "target": decision.drift.target, "verdict": decision.verdict,
                         "reasons": decision.codes}))

        # (`adopt` records its own event: who confirmed the first write.)
        if decision.first_contact and desired is not None and trigger != "adopt" \
                and (leader or not self.shared_audit):
            self._record_first_contact(decision, desired, trigger, events)
        verdict = decision.verdict
        if _writes(decision, leader, status):
            self._store_ready(desired)  # never apply what cannot be recorded
        if decision.record_revision and desired is not None and cib is not None:
            events.append(self._record_revision(decision, desired, cib, live, trigger))
        if verdict == "no-change":
            ignored = self.drift_mode == "off" and cib is not None and bool(cib.changes)
            return result("drift-ignored" if ignored else "no-change")
        if verdict == "wait":
            code = decision.reasons[0].code if decision.reasons else "no-source"
            return result(_WAIT_AS.get(code, "waiting-for-dc"), _message(decision), changes=changes)
        if verdict == "report-drift":
            return result("drift-reported", _message(decision), changes=changes)
        if verdict == "refuse":
            assert desired is not None
            # Announced in the marker history only when the other nodes cannot judge it themselves (a
            # policy refusal needs the writer's impact), and only by the agent: an invalid commit, which
            # every node refuses on its own, leaves the live CIB untouched, its marker included.
            self._record_refusal(decision, desired, trigger, events,
                                 announce=role == "writer" and status.quorate
                                 and not set(decision.codes) <= _SELF_JUDGED)
            outcome = next((o for code, o in _REFUSED_AS if code in decision.codes), "refused")
            if leader and status.quorate and marker.corosync_bad == rev and marker.revision == rev \
                    and marker.kind == "apply":
                # All or nothing: the corosync.conf part of this revision failed and is being rolled
                # back; its CIB part, applied before the rollout, goes back too.
                self._undo_cib_of_bad_rollout(rev, desired, marker, trigger, events)
                return result(outcome, _message(decision), changes=changes)
            drift = decision.drift
            if drift is not None and drift.correct and leader and status.quorate:
                # Held head, hand edit: put back what the last ha-gitops write left (never the head).
                target = self._last_write(marker)
                if target is not None:
                    self._write_and_verify("drift-corrected", as_cib(target), desired, state, live, status,
                                           trigger, events, timer, rev=marker.revision or rev,
                                           digest=marker.digest, impact=None, result=result)
            return result(outcome, _message(decision), changes=changes)
        # apply / correct-drift: the writer writes.
        assert desired is not None and state is not None and cib is not None
        if not cib.changes:
            return result("no-change", "no CIB change; the corosync.conf rollout carries the revision",
                          changes=changes)
        kind: Literal["apply", "drift-corrected"] = "apply" if verdict == "apply" else "drift-corrected"
        return self._write_and_verify(kind, cib.wanted, desired, state, live, status, trigger, events, timer,
                                      rev=rev, digest=cib.digest, impact=decision.plan.impact,
                                      result=result, decision=decision)

    def _record_first_contact(self, decision: Decision, desired: DesiredInput, trigger: str,
                              events: list[int]) -> None:
        """Once per revision and verdict: a cluster never managed, the plan, and what the agents do."""
        waits = "first-contact" in decision.codes
        if not waits and decision.verdict not in ("apply", "no-change"):
            return  # not for this pass to say (no quorum, another node's agent writes)
        if not self._once("first-contact", f"{decision.plan.revision}:{waits}"):
            return
        events.append(self._record(
            node=self.node, kind="first-contact", outcome="skipped" if waits else "success",
            commit=desired.commit, diff=[c.model_dump() for c in decision.plan.cib_changes] or None,
            summary=(f"first contact: the revision deletes; waiting for `ha-gitops adopt` "
                     f"({len(decision.plan.cib_changes)} change(s))" if waits else
                     f"first contact: the revision deletes nothing; applied as planned "
                     f"({len(decision.plan.cib_changes)} change(s))"),
            details={"trigger": trigger, "verdict": decision.verdict, "reasons": decision.codes,
                     "plan": decision.plan.model_dump(mode="json", include={"cib_changes", "steps",
                                                                            "corosync_changes"})}))

    def _announce(self, entry: HistoryEntry) -> bool:
        """Put a decision that writes no configuration (a refusal, a failed verify) in the marker history,
        so every node's trail records it under the same event id. A marker-only write, guarded like any;
        when it is skipped or fails the event stays in this trail only (logged)."""
        try:
            write_marker_only(self.cluster, lambda m: announce(m, entry), guard=self._guard)
            return True
        except HaGitopsError as exc:
            log.warning("%s of %s not announced to the other nodes: %s", entry.kind,
                        (entry.revision or "-")[:12], exc)
            return False

    def _record_refusal(self, decision: Decision, desired: DesiredInput, trigger: str,
                        events: list[int], *, announce: bool = False) -> None:
        """Once per revision and set of reasons: the audit trail says what was refused and why.

        Its event id is the revision's and the reasons' (uuid5), so every node that refuses the same
        revision for the same reasons records the same event; the writer (`announce`) also puts it in
        the marker history, for the nodes that cannot judge it themselves (a policy refusal needs the
        impact only the writer predicts)."""
        codes = decision.codes
        if not self._once("refused", f"{decision.plan.revision}:{','.join(codes)}"):
            return
        if set(codes) <= {"suspended", "pinned", "bad-revision"}:
            return  # the operator's or the verify's own state, recorded when it was set
        first = decision.reasons[0]
        errors = [f for r in decision.reasons for f in r.findings]
        summary = _REFUSAL_SUMMARY.get(first.code, "refused: {message}").format(
            n=len(errors), message=first.message.splitlines()[0][:200])
        details: Details = {
            "trigger": trigger, "reasons": [r.model_dump(mode="json") for r in decision.reasons],
            "violations": [v.model_dump(mode="json") for r in decision.reasons for v in r.violations],
            "impact": decision.plan.impact.model_dump(mode="json") if decision.plan.impact else None,
            "findings": [f.model_dump() for f in decision.findings]}
        if decision.basis.corosync_desired_digest:
            details["digest"] = decision.basis.corosync_desired_digest
        if decision.plan.corosync_changes:
            details["corosync_class"] = decision.plan.corosync_class
        rev = decision.plan.revision or ""
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ha-gitops:refused:{rev}:{','.join(codes)}"))
        if announce:
            details["announced"] = self._announce(HistoryEntry(
                event=event_id, kind="refused", revision=rev or None, node=self.node, at=int(time.time()),
                outcome="refused", codes=tuple(codes)))
        events.append(self._record(
            event_id=event_id, node=self.node, kind="refused", outcome="refused", commit=desired.commit,
            summary=summary, error=decision.refusal_text(),
            diff=[c.model_dump() for c in decision.plan.cib_changes] or None, details=details))

    def _write_and_verify(self, kind: Literal["apply", "drift-corrected"], wanted: etree._Element,
                          desired: DesiredInput, state: DesiredState | None, live: etree._Element,
                          status: ClusterStatus, trigger: str, events: list[int], timer: StageTimer, *,
                          rev: str, digest: str | None, impact: Impact | None,
                          result: Callable[..., PassResult], decision: Decision | None = None) -> PassResult:
        ignore = state.policy.ignore if state is not None else []
        settle = state.policy.settle.timeout.total_seconds() if state is not None else 120.0
        impact_detail: Details = {"impact": impact.model_dump(mode="json")} if impact else {}
        quiet = impact is not None and not impact.resources and not impact.node_actions
        changes = len(decision.plan.cib_changes) if decision else 0
        diff_json = [c.model_dump() for c in decision.plan.cib_changes] if decision else None
        if kind == "apply" and decision is not None and decision.plan.removed_resources:
            try:
                with timer.stage("stop-first"):
                    stopped = self._stop_removed_first(decision.plan.removed_resources, status, live, digest,
                                                       settle)
            except HaGitopsError as exc:
                raise self._failed("stop-first", str(exc), desired=desired,
                                   summary=f"{kind} of {rev[:12]} failed while stopping removed resources",
                                   cib_version_before=cib_version(live), diff=diff_json, cause=exc,
                                   what=f"stopping the resources {kind} of {rev[:12]} removes") from exc
            if stopped:
                impact_detail["stopped_first"] = stopped
        event_id = str(uuid.uuid4())

        def new_marker(live_marker: Marker) -> Marker:
            # A newer commit clears a pin and a bad mark; suspend stays the operator's.
            return live_marker.model_copy(update={
                "revision": rev, "digest": digest, "event": event_id, "kind": kind, "applied_by": self.node,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "bad": None if kind == "apply" else live_marker.bad,
                "pinned": None if live_marker.pinned != rev and kind == "apply" else live_marker.pinned})

        fences_before = self._fences_before()
        try:
            with timer.stage("write"):
                outcome = write_configuration(self.cluster, wanted, ignore=ignore, marker=new_marker,
                                              max_attempts=self.max_attempts,
                                              before_patch=_pause_before_patch,
                                              after_patch=_pause_after_patch, guard=self._guard)
        except (PatchRejected, ConvergeFailed, HaGitopsError) as exc:
            raise self._failed("write", str(exc), desired=desired,
                               summary=f"{kind} of {rev[:12]} failed; live cluster left as it was",
                               cib_version_before=cib_version(live), config_before=configuration_text(live),
                               patch=getattr(exc, "patch_xml", None), diff=diff_json,
                               details={"trigger": trigger, "attempted": kind}, cause=exc,
                               what=f"{kind} of {rev[:12]}") from exc
        if not outcome.changed:
            return result("no-change", "converged meanwhile")
        if impact_detail.get("stopped_first"):
            # "Before" is the configuration before this change, not the intermediate stop.
            outcome.config_before, outcome.version_before = configuration_text(live), cib_version(live)
        faults.pause("after-write")
        self._record_meanwhile(live, outcome, rev, kind, desired, trigger, events)
        if outcome.lost_race is not None:
            return self._record_lost_race(kind, rev, desired, outcome, event_id, trigger, events, result)
        with timer.stage("record"):
            # The timings so far: what it took from the trigger to the write that made the change live.
            ev_id = self._record_write(kind, desired, outcome, event_id, trigger,
                                    {**_substituted(decision), **impact_detail, "timings": timer.durations},
                                    origin=updated_by(live) if kind == "drift-corrected" else None)
        events.append(ev_id)
        scope = change_scope(decision.plan.cib_changes, wanted, live, impact) if decision is not None \
            else ChangeScope(everything=True)
        with timer.stage("verify"):
            evidence = self.watch(status, settle, wait=not quiet, fences_before=fences_before, scope=scope,
                                  impact=impact)
        check = PendingCheck(kind=kind, revision=rev, marker_event=event_id, event=ev_id,
                             commit=desired.commit, config_before=outcome.config_before, evidence=evidence,
                             history_before=fences_before, settle=settle)
        res = self._conclude(check, judge(evidence), events, result)
        if res is not None:
            return res
        return result("applied" if kind == "apply" else "drift-corrected",
                      f"{len(outcome.objects)} object(s) changed"
                      + ("; verify inconclusive, re-checked once the cluster is whole"
                         if self.pending_check is not None else ""),
                      changes=changes or len(outcome.objects))

    def _record_meanwhile(self, live: etree._Element, outcome: WriteOutcome, rev: str, kind: str,
                          desired: DesiredInput, trigger: str, events: list[int]) -> None:
        """A hand edit made between this pass's read and the write's own read is replaced by the write:
        recorded as drift first (who made it, what), so no hand edit vanishes with only the write's diff
        to show it. Only when the configuration epoch moved (status updates bump num_updates only)."""
        seen, read = cib_version(live).rsplit(".", 1)[0], outcome.version_before.rsplit(".", 1)[0]
        if seen == read:
            return
        first = as_cib(parse_xml_bytes(outcome.config_before.encode(), source="the CIB the write read"))
        meanwhile = pending_changes(live, first)
        if not meanwhile:
            return
        origin = outcome.updated_by_before
        events.append(self._record(
            node=self.node, kind="drift-detected", outcome="success", commit=desired.commit,
            summary=f"changed while this pass ran: {len(meanwhile)} object(s), written by "
                    f"{origin.get('update-user')} via {origin.get('update-client')} on "
                    f"{origin.get('update-origin')}; replaced by the {kind} of {rev[:12]}",
            cib_version_before=cib_version(live), cib_version_after=outcome.version_before,
            diff=[c.model_dump() for c in meanwhile],
            details={"origin": origin, "trigger": trigger, "meanwhile": True, "replaced_by": kind}))

    def _record_lost_race(self, kind: str, rev: str, desired: DesiredInput, outcome: WriteOutcome,
                          event_id: str, trigger: str, events: list[int],
                          result: Callable[..., PassResult]) -> PassResult:
        """The patch landed, but right after it this node was not the quorate DC any more (a patch held
        across a membership change): recorded as a write that lost the race, never as a success, and not
        verified. The quorate partition's DC decides what the cluster keeps."""
        race = outcome.lost_race or {}
        reason: SkipReason = "NotWriter" if race.get("reason") == "NotWriter" else "LostQuorum"
        message = f"{kind} of {rev[:12]} was written as {_RACED_WHY[reason]} ({race.get('message')})"
        failure = Failure.of("write", message, reason=reason)
        ev_id = self._record_write(kind, desired, outcome, event_id, trigger,
                                   {"lost_race": race, **failure.details()}, outcome_name="failure",
                                   summary=f"{kind} of {rev[:12]} lost the race: written as "
                                           f"{_RACED_WHY[reason]}; not verified, the quorate partition's "
                                           "DC decides what stays")
        failure.event = ev_id or None
        events.append(ev_id)
        return result("error", message, failure=failure, changes=len(outcome.objects))

    # ------------------------------------------------------------------ verify: the verdict carried out
    @property
    def pending_check(self) -> PendingCheck | None:
        """An inconclusive verify waiting for the cluster to be whole (kept in the store: survives a
        restart of the agent)."""
        try:
            saved = self.store.get_state("verify-recheck", scope=self.node)
        except AuditError as exc:  # the store's incident is reported by the pass; the re-check waits
            log.error("audit trail: %s", exc)
            return None
        return PendingCheck.model_validate(saved) if saved else None

    def _conclude(self, check: PendingCheck, verdict: VerifyVerdict, events: list[int],
                  result: Callable[..., PassResult]) -> PassResult | None:
        """Record the verdict; roll an unhealthy apply back. None: the pass goes on as applied."""
        what = f"{check.kind} of {check.revision[:12]}"
        again = " (re-checked once the cluster was whole)" if check.evidence.whole else ""
        details: Details = {"after_event": check.event, "marker_event": check.marker_event,
                            "verdict": verdict.outcome, "faults": verdict.faults, "left": verdict.left,
                            "problems": [p.model_dump() for p in verdict.problems],
                            "fenced": [f.model_dump() for f in check.evidence.fences or []],
                            "rechecked": check.evidence.whole}
        if verdict.outcome != "inconclusive":
            self.store.delete_state("verify-recheck", scope=self.node)
        if verdict.outcome == "failed":
            blamed = verdict.blamed
            failed = Failure.of("verify", "")
            # Every node's trail holds the failed verify: announced in the marker history, with the
            # auto-rollback that follows it (one write) or on its own.
            entry = HistoryEntry(event=str(uuid.uuid4()), kind="verify", revision=check.revision,
                                 node=self.node, at=int(time.time()), outcome="failure",
                                 codes=(failed.reason,))
            verify_id = self._record(
                event_id=entry.event, node=self.node, kind="verify", outcome="failure", commit=check.commit,
                summary=f"cluster unhealthy after {what}{again}: " + "; ".join(p.message for p in blamed),
                details={**details, **failed.details()})
            events.append(verify_id)
            if check.kind == "apply":
                events.append(self._auto_rollback(check.config_before, check.revision, check.commit,
                                                  check.event, blamed, announced=entry))
                return result(
                    "rolled-back", f"unhealthy after the apply ({blamed[0].message}); previous "
                    f"configuration restored, {check.revision[:12]} marked bad",
                    failure=Failure.of("verify", blamed[0].message, event=verify_id or None))
            self._announce(entry)
            return None
        if verdict.outcome == "inconclusive":
            self.store.set_state("verify-recheck", check.model_dump(mode="json"), scope=self.node)
            self.verify_waiting = (f"verify of {check.revision[:12]} inconclusive; re-check waits for the "
                                   "cluster to be whole")
            if self._once("verify-inconclusive", f"{check.marker_event}:{';'.join(verdict.faults)}"):
                events.append(self._record(
                    node=self.node, kind="verify", outcome="inconclusive", commit=check.commit,
                    summary=f"verify of {what} inconclusive: {verdict.summary()}; the revision is kept "
                            "and re-checked once the cluster is whole", details=details))
            return None
        if check.evidence.whole or verdict.problems or check.evidence.fences:
            # Worth a line in the trail: a re-check's result, or what was seen but not blamed.
            seen = [p.message for p in verdict.problems]
            events.append(self._record(
                node=self.node, kind="verify", outcome="success", commit=check.commit,
                summary=f"{what} verified{again}" + ("; seen meanwhile, not caused by it: " + "; ".join(seen)
                                                     if seen else ""), details=details))
        return None

    def _recheck(self, marker: Marker, status: ClusterStatus, events: list[int],
                 result: Callable[..., PassResult]) -> PassResult | None:
        """The writer re-judges an inconclusive verify once the cluster is whole; a newer write drops it."""
        check = self.pending_check
        self.verify_waiting = None
        if check is None:
            return None
        if marker.event != check.marker_event:
            self.store.delete_state("verify-recheck", scope=self.node)  # a newer write: judged on its own
            return None
        waiting = cluster_whole(check.evidence.before, status)
        now = time.monotonic()
        if waiting is not None:
            self._whole_since = None
        elif self._whole_since is None or now - self._whole_since < RECHECK_WHOLE_FOR:
            # A node that has just rejoined runs nothing yet, and crm_resource --wait can return before
            # the DC has computed the transition for it: judge once whole for a while, then settled.
            self._whole_since = self._whole_since or now
            waiting = "the cluster to stay whole for a moment"
        else:
            settled = self.cluster.wait_settled(check.settle)
            status = self.cluster.status()
            waiting = cluster_whole(check.evidence.before, status) if settled else "the cluster to settle"
        if waiting is not None:
            self.verify_waiting = f"verify of {check.revision[:12]} inconclusive; waiting for {waiting}"
            return None
        fences = fence_history(self.cluster.runner) if check.history_before is not None else None
        seen = {f.key() for f in check.history_before or []}
        evidence = check.evidence.model_copy(update={
            "after": status, "samples": [*check.evidence.samples, status], "whole": True,
            "fences": None if fences is None else [f for f in fences if f.key() not in seen]})
        verdict = judge(evidence)
        if verdict.outcome == "failed":
            self._store_ready(None)  # the auto-rollback must be recordable
        return self._conclude(check.model_copy(update={"evidence": evidence}), verdict, events, result)

    def _record_revision(self, decision: Decision, desired: DesiredInput, cib: CibPlan,
                         live: etree._Element, trigger: str) -> int:
        """The writer takes a revision the CIB needs no change for: a marker-only write, so `status` names
        it and the other agents know it was accepted (their corosync.conf rollout waits for that)."""
        rev = decision.plan.revision or ""
        marker_event = str(uuid.uuid4())
        try:
            written = write_marker_only(self.cluster, lambda m: m.model_copy(update={
                "revision": rev, "digest": cib.digest, "event": marker_event, "kind": "apply",
                "applied_by": self.node, "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "bad": None, "pinned": None if m.pinned != rev else m.pinned}), guard=self._guard)
        except HaGitopsError as exc:
            raise self._failed("write", str(exc), desired=desired,
                               summary=f"recording revision {rev[:12]} in the marker failed; nothing written",
                               details={"trigger": trigger}, cause=exc,
                               what=f"recording revision {rev[:12]} in the marker") from exc
        config = configuration_text(live)
        ev_id = self._record(
            event_id=marker_event, node=self.node, kind="apply", outcome="success", commit=desired.commit,
            summary=f"apply of {rev[:12]}: no CIB change"
                    + ("; the corosync.conf rollout follows" if decision.plan.corosync_changes else ""),
            cib_version_before=cib_version(live), config_before=config, config_after=config,
            details={"marker_event": marker_event, "marker_prev": previous_event(written, marker_event),
                     "trigger": trigger, "record_only": True,
                     "corosync_changes": [c.as_dict() for c in decision.plan.corosync_changes]})
        self._mark_recorded(marker_event, config)
        return ev_id

    def _fences_before(self) -> list[FenceEvent] | None:
        pending, self._fences = self._fences, None
        try:
            return pending.result() if pending is not None else fence_history(self.cluster.runner)
        except HaGitopsError:
            return None

    # ------------------------------------------------------------------ safety around a write
    def _timed_predict(self, live: etree._Element, state: DesiredState, timer: StageTimer) -> Impact:
        with timer.stage("predict"):
            return self.predict(live, state)

    def predict(self, live: etree._Element, state: DesiredState) -> Impact:
        """What Pacemaker would do with the configuration exactly as it will be written."""
        proposed = proposed_configuration(state, live, self.substitutions)
        return simulate(live, proposed, runner=self.cluster.runner)

    def _stop_removed_first(self, removed: Sequence[str], status: ClusterStatus, live: etree._Element,
                            digest: str | None, timeout: float) -> list[str]:
        """Resources removed from git are stopped (target-role Stopped) and waited for before they are
        deleted, so nothing is left running unmanaged or orphaned. The stop is a version-checked write
        that already carries the new digest in the marker, so other agents do not take it for drift."""
        running = {r.id for r in status.resources if r.active} | {
            r.parent for r in status.resources if r.active and r.parent}
        to_stop = sorted(set(removed) & running)
        if not to_stop:
            return []
        write_configuration(self.cluster, with_target_role(live, to_stop, "Stopped"),
                            marker=lambda m: m.model_copy(update={"digest": digest, "kind": "stop-first"}),
                            max_attempts=self.max_attempts, guard=self._guard)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.cluster.status()
            if not any(r.active and (r.id in to_stop or r.parent in to_stop) for r in st.resources):
                return to_stop
            time.sleep(0.5)
        raise HaGitopsError(f"resources {', '.join(to_stop)} did not stop within {timeout:g}s")

    def watch(self, before: ClusterStatus, timeout: float, *, wait: bool = True,
              fences_before: list[FenceEvent] | None = None, scope: ChangeScope | None = None,
              impact: Impact | None = None) -> VerifyEvidence:
        """Watch the cluster until it has settled (bounded by [settle] timeout), sampling its status, then
        collect the fencing that happened since the write: the evidence controller.verify.judge weighs.

        Without `wait` (the prediction said no resource or node action follows the write) the cluster is
        read once: crm_resource --wait polls every 2 s, which would only delay the next change."""
        samples: list[ClusterStatus] = []
        settled = True
        if wait:
            deadline = time.monotonic() + timeout
            settled = False
            while time.monotonic() < deadline:
                # crm_resource --wait can return before the transition for a fresh write has begun: also
                # wait until no resource is in a transient role (Starting, Stopping, ...).
                settled = self.cluster.wait_settled(max(deadline - time.monotonic(), 1))
                samples.append(self.cluster.status())
                if settled and not any(r.role.endswith("ing") for r in samples[-1].resources):
                    break
                settled = False
                time.sleep(0.3)
        if not samples or not settled:
            samples.append(self.cluster.status())
        fenced: list[FenceEvent] | None = None
        if fences_before is not None:
            seen = {f.key() for f in fences_before}
            now = fence_history(self.cluster.runner)
            fenced = None if now is None else [f for f in now if f.key() not in seen]
        return VerifyEvidence(before=before, samples=samples[:-1], after=samples[-1], settled=settled,
                              fences=fenced, scope=scope or ChangeScope(everything=True), impact=impact)

    def _auto_rollback(self, config_before: str, rev: str, commit: CommitInfo | None, apply_event: int,
                       problems: Sequence[HealthProblem], announced: HistoryEntry | None = None) -> int:
        """Restore the configuration from before the apply and mark the revision bad. A failure to restore
        is recorded (stage auto-rollback) and the revision is still marked bad, so it is not retried.
        `announced` (the failed verify) goes into the marker history in the same write."""
        wanted = as_cib(parse_xml_bytes(config_before.encode(), source="configuration before apply"))
        marker_event = str(uuid.uuid4())

        def with_verify(m: Marker) -> Marker:
            return announce(m, announced) if announced is not None else m

        def new_marker(live_marker: Marker) -> Marker:
            return with_verify(live_marker).model_copy(update={
                "event": marker_event, "kind": "auto-rollback", "applied_by": self.node, "digest": None,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"), "bad": rev})

        try:
            faults.fail("auto-rollback")
            back = write_configuration(self.cluster, wanted, marker=new_marker,
                                       max_attempts=self.max_attempts, guard=self._guard)
        except HaGitopsError as exc:
            # Skipped for want of quorum or DC-ship: the bad mark would be skipped the same way, and the
            # quorate partition's DC judges the revision itself.
            marked = not isinstance(exc, LostLeadership)
            if marked:
                try:
                    write_marker_only(self.cluster, lambda m: with_verify(m).model_copy(update={"bad": rev}),
                                      guard=self._guard)
                except HaGitopsError:
                    marked = False
            raise self._failed("auto-rollback", str(exc), desired=None, commit=commit, cause=exc,
                               what=f"auto-rollback of {rev[:12]} (the unhealthy configuration is still "
                                    "live, the revision not marked bad)",
                               summary=f"auto-rollback of {rev[:12]} failed: the unhealthy configuration is "
                                       "still live" + ("; revision marked bad" if marked else
                                                       "; the revision could not be marked bad either"),
                               patch=getattr(exc, "patch_xml", None),
                               details={"rolled_back_event": apply_event, "bad_revision": rev,
                                        "marked_bad": marked,
                                        "problems": [p.model_dump() for p in problems]}) from exc
        ev_id = self._record_write("auto-rollback", None, back, marker_event, "verify",
                                {"rolled_back_event": apply_event, "bad_revision": rev,
                                 "problems": [p.model_dump() for p in problems]}, commit=commit,
                                summary=f"auto-rollback of {rev[:12]}: previous configuration restored, "
                                        "revision marked bad")
        return ev_id

    def _undo_cib_of_bad_rollout(self, rev: str, desired: DesiredInput, marker: Marker, trigger: str,
                                 events: list[int]) -> None:
        """The revision's corosync.conf rollout failed (the marker's corosync_bad) while the marker still
        names the revision's own CIB apply: put back the configuration from before that apply, in one
        guarded patch, as an auto-rollback. The marker's digest is cleared, so the restored CIB is not
        taken for a hand edit of the head; later passes judge drift against this write."""
        applied = next((e for e in reversed(self.store.events_for_commit(rev))
                        if e.kind == "apply" and e.config_before), None)
        if applied is None or applied.config_before is None:
            if self._once("corosync-bad-cib", f"{rev}:unknown"):
                log.warning("the CIB part of %s stays: no apply event with the configuration before it",
                            rev[:12])
            return
        if applied.config_before == applied.config_after:
            return  # the revision changed corosync.conf only (its apply recorded the revision)
        wanted = as_cib(parse_xml_bytes(applied.config_before.encode(), source="configuration before apply"))
        marker_event = str(uuid.uuid4())

        def new_marker(live_marker: Marker) -> Marker:
            return live_marker.model_copy(update={
                "event": marker_event, "kind": "auto-rollback", "applied_by": self.node, "digest": None,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds")})

        try:
            back = write_configuration(self.cluster, wanted, marker=new_marker,
                                       max_attempts=self.max_attempts, guard=self._guard)
        except HaGitopsError as exc:  # skipped (no quorum, not DC) or refused: the next pass tries again
            if self._once("corosync-bad-cib", f"{rev}:failed"):
                events.append(self._record(
                    node=self.node, kind="error", outcome="failure", error=str(exc),
                    summary=f"the CIB part of {rev[:12]} could not be rolled back yet: {exc}"[:300],
                    details={"stage": "auto-rollback", "reason": getattr(exc, "reason", "AutoRollbackFailed"),
                             "bad_revision": rev, "trigger": trigger}))
            return
        events.append(self._record_write(
            "auto-rollback", desired, back, marker_event, trigger,
            {"rolled_back_event": applied.id, "bad_revision": rev, "part": "cib"},
            summary=f"auto-rollback of {rev[:12]}: its corosync.conf rollout failed, so its CIB part is "
                    "restored too (configuration before its apply)"))

    def _record_write(self, kind: str, desired: DesiredInput | None, outcome: WriteOutcome, marker_event: str,
                      trigger: str, extra: Details, origin: Mapping[str, str | None] | None = None,
                      summary: str | None = None, commit: CommitInfo | None = None,
                      outcome_name: str = "success") -> int:
        # guard_seconds: what the quorum/DC checks before the patches cost (kept to watch it stay small).
        details: Details = {"marker_event": marker_event,
                            "marker_prev": previous_event(outcome.marker_after, marker_event),
                            "trigger": trigger, "attempts": outcome.attempts,
                            "guard_seconds": outcome.guard_seconds, **extra}
        if outcome.conflicts:
            details["conflicts"] = [c.model_dump() for c in outcome.conflicts]
        if origin:
            details["origin"] = origin
        ev_id = self._record(
            event_id=marker_event, node=self.node, kind=kind, outcome=outcome_name,
            commit=desired.commit if desired else commit,
            summary=summary or f"{kind}: {len(outcome.objects)} object(s) changed"
                    + (f" after {len(outcome.conflicts)} concurrent change(s)" if outcome.conflicts else ""),
            cib_version_before=outcome.version_before, cib_version_after=outcome.version_after,
            config_before=outcome.config_before, config_after=outcome.config_after, patch=outcome.patch_xml,
            diff=[c.model_dump() for c in outcome.objects], duration=outcome.duration, details=details)
        self._mark_recorded(marker_event, outcome.config_after)
        self._last_config = outcome.config_after
        return ev_id

    def _mark_recorded(self, marker_event: str, config: str) -> None:
        """This node wrote (and recorded, or queued) the marker's event: never record it again as observed."""
        self._own_event = marker_event
        try:
            self.store.set_state("recorded-marker-event", marker_event, scope=CLUSTER_SCOPE)
            self.store.set_state("seen-marker-event", marker_event, scope=self.node)
            self._remember_write(marker_event, config)
        except AuditError as exc:  # kept in memory meanwhile (the outbox holds the event itself)
            log.error("audit trail: %s", exc)

    # ------------------------------------------------------------------ rollback
    def rollback(self, ref: int | str) -> PassResult:
        """Bring the configuration back to what it was before event `ref` (its number in this trail, or
        its cluster-wide event id or 8+ characters of it), and pin its revision."""
        started = time.monotonic()
        target = self.store.find(ref)
        # Named by its cluster-wide id in what is recorded: the same on every node.
        event_id = f"{target.event_id[:8]} (#{target.id} on {self.node})" if target.event_id \
            else str(target.id)
        if not target.config_before:
            if target.backfilled:
                raise HaGitopsError(
                    f"event {event_id} ({target.kind} by {target.node}) was backfilled on this node from "
                    "the CIB marker history, which keeps no configuration: roll it back on "
                    f"{target.node} (its writer), on a node that saw it live, or from a shared trail")
            raise HaGitopsError(f"event {event_id} ({target.kind}) has no configuration before it to "
                                "return to" + (f" in this trail (roll it back on {target.node}, its "
                                               "writer)" if target.node != self.node else ""))
        wanted = as_cib(parse_xml_bytes(target.config_before.encode(), source=f"audit event {event_id}"))
        live = self.cluster.read_cib()
        marker, status = read_marker(live), self.cluster.status()
        self._record_observed(live, marker)
        pin = target.commit.sha if target.commit else marker.revision
        decision = decide_rollback(wanted, live, status, marker, event_id=event_id, pin=pin)
        self._store_ready(None)
        if decision.verdict == "wait":
            return PassResult(outcome="no-quorum", message=_message(decision), decision=decision,
                              duration=round(time.monotonic() - started, 3))
        marker_event = str(uuid.uuid4())

        def new_marker(live_marker: Marker) -> Marker:
            return live_marker.model_copy(update={
                "event": marker_event, "kind": "rollback", "applied_by": self.node, "digest": None,
                "applied_at": datetime.now(UTC).isoformat(timespec="seconds"), "pinned": pin})

        try:
            # An operator's verb, run on any node: it needs quorum, not DC-ship.
            outcome = write_configuration(self.cluster, wanted, marker=new_marker,
                                          max_attempts=self.max_attempts, guard=QUORUM_ONLY)
            if not outcome.changed:
                # Already there: still pin, so the agent does not re-apply the rolled-back revision.
                outcome.marker_after = write_marker_only(self.cluster, new_marker, guard=QUORUM_ONLY)
                self._remember_write(marker_event, outcome.config_after)
        except HaGitopsError as exc:
            raise self._failed("write", str(exc), desired=None,
                               summary=f"rollback to before event {event_id} failed; live cluster left as "
                                       "it was", patch=getattr(exc, "patch_xml", None),
                               details={"target_event": target.id, "target_event_id": target.event_id},
                               cause=exc,
                               what=f"rollback to before event {event_id}") from exc
        ev_id = self._record_write("rollback", None, outcome, marker_event, "rollback",
                                {"target_event": target.id, "target_event_id": target.event_id,
                                 "pinned": pin},
                                summary=f"rollback to the configuration before event {event_id}"
                                        + (f"; {pin[:12]} pinned" if pin else ""))
        return PassResult(outcome="rolled-back", revision=pin, events=[ev_id] if ev_id else [],
                          changes=len(outcome.objects),
                          duration=round(time.monotonic() - started, 3), decision=decision,
                          message=f"configuration before event {event_id} restored"
                                  + (f"; revision {pin[:12]} pinned until a newer commit or "
                                     "`ha-gitops resume`" if pin else ""))


def _writes(decision: Decision, leader: bool, status: ClusterStatus) -> bool:
    """Whether carrying this decision out writes the CIB on this node."""
    if decision.record_revision or decision.verdict in ("apply", "correct-drift"):
        return True
    return decision.verdict == "refuse" and decision.drift is not None and decision.drift.correct \
        and leader and status.quorate


# Refusals every node reaches on its own from the commit itself: never announced through the CIB.
_SELF_JUDGED = frozenset({"invalid", "signature", "unsupported", "suspended", "pinned", "bad-revision"})


# Why a write was skipped, in an audit summary (cib_writer.LostLeadership's reason).
_SKIPPED_WHY = {"LostQuorum": "this node's partition had lost quorum just before the write",
                "NotWriter": "this node was not the DC any more just before the write"}
# Why a write that landed is not a success (WriteOutcome.lost_race: the guard asked again after it).
_RACED_WHY: dict[SkipReason, str] = {"LostQuorum": "this node's partition lost quorum",
                                     "NotWriter": "this node stopped being the DC"}


def _target(decision: Decision, rev: str) -> str:
    return "the last write" if decision.drift and decision.drift.target == "last-write" else rev[:12]


def _count(decision: Decision) -> int:
    if decision.drift is not None and decision.verdict != "apply":
        return len(decision.drift.changes)
    return len(decision.plan.cib_changes) + len(decision.plan.corosync_changes)


def _message(decision: Decision) -> str:
    if decision.reasons:
        return "; ".join(r.message for r in decision.reasons)
    if decision.verdict == "no-change":
        return ""
    return f"{_count(decision)} change(s)"


_DRY_OUTCOME: dict[str, Outcome] = {"no-change": "no-change", "apply": "applied",
                                    "correct-drift": "drift-corrected", "report-drift": "drift-reported",
                                    "refuse": "refused", "wait": "waiting-for-dc"}


def _dry_outcome(decision: Decision) -> Outcome:
    return _DRY_OUTCOME[decision.verdict]


def _pause_before_patch(_attempt: int) -> None:
    faults.pause("before-patch")


def _pause_after_patch(_attempt: int) -> None:
    faults.pause("after-patch")


def _substituted(decision: Decision | None) -> Details:
    subs = decision.plan.substitutions if decision else []
    return {"substituted": [s.model_dump() for s in subs]} if subs else {}


_KINDS = frozenset(k.value for k in EventKind)
# Refusal reasons every node's pass finds itself (the writer alone predicts the impact: policy).
_JUDGED_BY_EVERY_NODE = frozenset({"invalid", "signature"})


def _time_of(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_sha(value: str | None) -> bool:
    return bool(value) and len(value or "") >= 7 and all(c in "0123456789abcdef" for c in (value or ""))


__all__ = ["DesiredInput", "PassFailed", "PassResult", "Reconciler", "config_digest", "revision_key",
           "text_digest"]
