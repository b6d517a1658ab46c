"""The one decision per revision (pure): desired vs observed -> the whole plan and what to do with it.

`plan` prints this value, `plan --out` stores it, `apply --plan` carries a stored one out, `apply --once`,
`rollback` and the agent's pass carry it out; none of them decides anything of its own. What is printed
is what is applied, whole, or nothing is (Terraform's saved plan, Flux's dry-run).

Inputs are data: the validated desired state (or the findings that stopped it), the CIB part of the plan
(`controller.plan.cib_plan`), the predicted impact (crm_simulate, run by the shell), the live CIB and
status, this node's corosync.conf, the marker, the policy, the role of the caller and the time. The
output names a verdict and, for every verdict but `apply`/`no-change`, the reasons, each with a code
from a closed list (like pcs's report codes and Flux's condition reasons).

Rules, in order (the README's "What the agent does with a revision" says the same):
1. no source, an invalid desired state, a refused signature: `refuse` (nothing of it is written);
2. no difference (CIB and corosync.conf): `no-change`;
3. drift (git still says what the marker says was written, the live CIB differs): `correct-drift`
   (drift_mode correct), `report-drift` (report, or suspended), nothing (off);
4. suspended, pinned, bad revision, the disruption policy (CIB impact, fencing, deletions, a
   corosync.conf cluster restart), an impact that could not be predicted, a corosync.conf change the
   caller cannot roll out: `refuse`, every reason listed; drift against the last ha-gitops write is still
   recorded and (unless suspended) corrected towards that write;
5. first contact (no marker: ha-gitops never wrote this cluster) and the revision deletes an object:
   `wait` for `ha-gitops adopt` (`adopt` set); deleting nothing, it goes on (`first_contact` set, so the
   pass records a `first-contact` event);
6. no DC, no quorum, not the writer: `wait` (the corosync.conf rollout still takes its own steps);
7. otherwise `apply`: the CIB patch, then the corosync.conf rollout, in `plan.steps` order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lxml import etree
from pydantic import BaseModel, Field

from controller.cib.diff import build_live_patch
from controller.cib.document import CibVersion, as_cib
from controller.cib.marker import OWN_RULES, Marker
from controller.cib.render import ObjectChange
from controller.corosync.rollout_plan import text_digest
from controller.desired.findings import Finding
from controller.desired.secret_gate import node_signals, pending, store_digest, undecryptable
from controller.desired.state import DesiredState
from controller.disruption import Violation, check_corosync_restart, check_disruption
from controller.impact import Impact
from controller.observed import ClusterStatus
from controller.plan import CibPlan, Plan, SecretChange, corosync_part, plan_of, plan_steps
from controller.secrets.model import store_sign

Verdict = Literal["no-change", "apply", "correct-drift", "report-drift", "refuse", "wait"]
ReasonCode = Literal[
    "no-source",       # no revision fetched yet
    "invalid",         # the desired state failed validation (every finding is listed)
    "signature",       # the commit's signature is not allowed
    "suspended",       # `ha-gitops suspend`: nothing is written
    "pinned",          # a rollback pinned this revision: not re-applied until a newer commit or resume
    "bad-revision",    # this revision left the cluster unhealthy and was rolled back
    "policy",          # cluster.toml [disruption] refuses the predicted impact
    "impact-unknown",  # the impact could not be predicted: refused rather than applied blind
    "unsupported",     # the caller cannot carry the revision out whole (e.g. no agents for corosync.conf)
    "no-dc",           # the cluster has no DC (an election): wait
    "no-quorum",       # the cluster is not quorate: nothing is written
    "not-writer",      # another node's agent (the DC's) writes the CIB
    "stale-plan",      # `apply --plan`: the live CIB or the revision moved since the plan was made
    "first-contact",   # a cluster ha-gitops never managed, and the revision deletes: `ha-gitops adopt`
    "secrets",         # a node cannot decrypt secrets.age (not a recipient, no identity): refused whole
    "secrets-pending", # not every online node's secrets store holds the values yet: wait
]
Role = Literal["writer", "observer", "operator"]
DriftMode = Literal["correct", "report", "off"]
# A refusal of these kinds is the operator's or the verify's, not the content's: the rollout of a bad
# revision still runs (it is what rolls the corosync.conf back), the others hold everything.
_ROLLOUT_RUNS_DESPITE: frozenset[str] = frozenset({"bad-revision"})
_WAITS: frozenset[str] = frozenset({"no-dc", "no-quorum", "not-writer"})
# Settings, not objects: a removed cluster option or default goes back to Pacemaker's default (a change),
# it deletes nothing. Everything else removed (a resource, a constraint, a node, a tag, ...) is a deletion.
_SETTING_KINDS: frozenset[str] = frozenset({"property", "rsc_default", "op_default"})


class Reason(BaseModel):
    code: ReasonCode
    message: str
    violations: list[Violation] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)

    def text(self) -> str:
        lines = [f"[{self.code}] {self.message}"]
        lines += [f"    - {f.where()}: {f.message}" for f in self.findings if f.severity == "error"]
        lines += [f"    - [{v.rule}] {v.message}" for v in self.violations]
        return "\n".join(lines)


class Basis(BaseModel):
    """What the plan was computed against: `apply --plan` refuses when any of it has moved."""

    revision: str | None = None
    desired_digest: str | None = None  # the desired folder's digest (DesiredState.digest)
    config_digest: str | None = None   # the effective desired configuration's (substitutions applied)
    cib_version: str | None = None     # "admin_epoch.epoch" of the live CIB (status updates do not count)
    corosync_digest: str | None = None  # this node's live corosync.conf
    corosync_desired_digest: str | None = None  # the desired corosync.conf (the rollout's identity)


class Drift(BaseModel):
    """The live CIB differs from what ha-gitops last wrote (a hand edit)."""

    target: Literal["head", "last-write"]  # what it is compared with and corrected towards
    changes: list[ObjectChange]
    correct: bool  # the decision corrects it (else it is only recorded)


class Decision(BaseModel):
    verdict: Verdict
    reasons: list[Reason] = Field(default_factory=list)
    plan: Plan
    drift: Drift | None = None
    basis: Basis = Field(default_factory=Basis)
    rollout: bool = False  # the corosync.conf rollout takes its step on this node in this pass
    # The writer records the revision in the marker even when the CIB needs no change: observers roll a
    # corosync.conf out only for a revision the writer accepted (so a refusal on the DC holds every node).
    record_revision: bool = False
    findings: list[Finding] = Field(default_factory=list)  # every validation finding (warnings too)
    first_contact: bool = False  # the cluster carries no marker: ha-gitops never wrote it

    @property
    def exit_code(self) -> int:
        """`plan`'s exit code: 0 no change, 1 changes the agent would apply, 3 changes it would refuse."""
        if self.verdict == "refuse":
            return 3
        if self.verdict == "no-change":
            return 0
        return 1

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def refusal_text(self) -> str:
        return "\n".join(r.text() for r in self.reasons)


@dataclass(frozen=True)
class DecideInput:
    """Everything the decision looks at, already read by the shell."""

    revision: str | None  # the commit sha, or "digest:..." for a folder; None: no source yet
    state: DesiredState | None  # None: loading failed (findings say why)
    findings: Sequence[Finding]
    cib: CibPlan | None  # the CIB part of the plan (None when the state did not load)
    live: etree._Element  # the live <cib>
    status: ClusterStatus
    marker: Marker
    now: datetime
    live_corosync: str | None = None  # this node's corosync.conf; None: not known here (no comparison)
    impact: Impact | None = None
    impact_error: str | None = None
    source_refusal: str | None = None  # the source's verdict on the commit (signature policy)
    last_write: etree._Element | None = None  # the configuration the marker's event left (audit trail)
    drift_mode: DriftMode = "correct"
    role: Role = "writer"
    can_rollout: bool = True  # agents run on every node to roll corosync.conf out
    cluster_name: str = "cluster"
    adopt: bool = False  # `ha-gitops adopt`: the operator confirmed the first write, deletions included
    # This node's Pacemaker secrets store: (resource, parameter) -> its .sign (None: missing or its value
    # does not match it). None: not read here (the plan then says "not decrypted here" / unknown).
    secret_store: Mapping[tuple[str, str], str | None] | None = None


def never_managed(marker: Marker) -> bool:
    """No ha-gitops marker at all in the CIB: a cluster met for the first time."""
    return not marker.nvpairs()


def deletions(changes: Sequence[ObjectChange]) -> list[ObjectChange]:
    """The objects a change removes (cluster options and defaults going back to default are not)."""
    return [c for c in changes if c.action == "removed" and c.kind not in _SETTING_KINDS]


def live_version(live: etree._Element) -> str:
    v = CibVersion.of(live)
    return f"{v.admin_epoch}.{v.epoch}"


def drift_against(live: etree._Element, target: etree._Element, state: DesiredState | None
                  ) -> list[ObjectChange]:
    """What differs between the live CIB and `target` (a <configuration> or <cib>), as the diff sees it."""
    ignore = [*(state.policy.ignore if state else ()), *OWN_RULES]
    d = build_live_patch(live, as_cib(copy.deepcopy(target)), ignore=ignore)  # as_cib adopts its input
    return d.objects() if d.changed else []


def decide(inp: DecideInput) -> Decision:
    """The whole plan for one revision and what to do with it (pure; see the module's rules)."""
    basis = Basis(revision=inp.revision, cib_version=live_version(inp.live),
                  corosync_digest=text_digest(inp.live_corosync) if inp.live_corosync is not None else None)
    findings = list(inp.findings)
    errors = [f for f in findings if f.severity == "error"]
    plan = Plan(cluster=inp.state.name if inp.state else inp.cluster_name, revision=inp.revision)
    first = never_managed(inp.marker)

    def done(verdict: Verdict, reasons: Sequence[Reason] = (), drift: Drift | None = None,
             rollout: bool = False, record: bool = False) -> Decision:
        return Decision(verdict=verdict, reasons=list(reasons), plan=plan, drift=drift, basis=basis,
                        rollout=rollout, findings=findings, record_revision=record, first_contact=first)

    if inp.state is not None:  # the rollout's identity, also for a refusal (events are found by it)
        basis.corosync_desired_digest = text_digest(inp.state.corosync_text)
    if inp.revision is None:
        return done("wait", [Reason(code="no-source", message="no desired state fetched yet")])
    held: list[Reason] = []
    if inp.source_refusal:
        held.append(Reason(code="signature", message=inp.source_refusal))
    unloaded = inp.state is None and not inp.source_refusal  # a refused commit is not even loaded
    if errors or unloaded or (inp.state is not None and inp.cib is None):
        held.append(_invalid(errors))
    held += _undecryptable(inp)
    if held:
        return done("refuse", held, _held_drift(inp, suspended=inp.marker.suspended))

    state, cib = inp.state, inp.cib
    assert state is not None and cib is not None
    basis.desired_digest, basis.config_digest = state.digest, cib.digest
    coro, coro_class = corosync_part(state, inp.live_corosync)
    plan = plan_of(state.name, inp.revision, cib, coro, coro_class, inp.impact)
    plan.secrets = secret_changes(state, inp.secret_store)
    if inp.impact_error:
        plan.notes.append(f"impact prediction unavailable: {inp.impact_error}")
    rev, marker = inp.revision, inp.marker
    accepted = marker.revision == rev  # the writer took this revision (the marker says so)
    writes = inp.role in ("writer", "operator")
    if not cib.changes and not coro and rev not in (marker.bad, marker.corosync_bad):
        record = writes and not accepted and _rollout_may_run(inp) and not _waits(inp)
        return done("no-change", rollout=_rollout_may_run(inp) and (accepted or record), record=record)

    # A writer between its stop-first write and the deletion is mid-apply, not edited by hand.
    drift_of_head = bool(cib.changes) and marker.digest == cib.digest and marker.kind != "stop-first"
    if drift_of_head:
        # Git says what was written; the live CIB was edited since: a hand edit, not a new revision.
        # (A corosync.conf rollout of the same revision goes on meanwhile.)
        rollout = _rollout_may_run(inp) and (accepted or writes)
        if inp.drift_mode == "off":
            return done("no-change", rollout=rollout)
        correct = inp.drift_mode == "correct" and not marker.suspended
        drift = Drift(target="head", changes=cib.changes, correct=correct)
        if not correct:
            reasons = [Reason(code="suspended", message="agents are suspended: drift is recorded, not "
                              "corrected")] if marker.suspended else []
            return done("report-drift", reasons, drift, rollout=rollout)
        waits = _waits(inp)
        return done("wait", waits, drift, rollout) if waits else done("correct-drift", [], drift, rollout)

    if marker.suspended:
        held.append(Reason(code="suspended", message="agents are suspended (`ha-gitops resume` to "
                           "continue)"))
    if marker.pinned and marker.pinned == rev:
        held.append(Reason(code="pinned", message=f"revision {rev[:12]} was rolled back and is pinned; "
                           "waiting for a newer commit or `ha-gitops resume`"))
    if rev in (marker.bad, marker.corosync_bad):
        part = "its corosync.conf rollout" if marker.corosync_bad == rev else "it"
        held.append(Reason(code="bad-revision", message=f"revision {rev[:12]} left the cluster unhealthy "
                           f"({part} failed verify) and was rolled back; not retried until a newer commit"))
    violations: list[Violation] = []
    if cib.changes:
        if inp.impact is not None:
            violations += check_disruption(inp.impact, state.policy, inp.now, changes=cib.changes)
        elif inp.role != "observer" or inp.impact_error is not None:  # an observer does not predict
            held.append(Reason(code="impact-unknown", message="the impact of the CIB change could not be "
                               "predicted" + (f": {inp.impact_error}" if inp.impact_error else "")
                               + "; refused rather than applied blind"))
    restart = check_corosync_restart(coro_class, state.policy, inp.now)
    if restart is not None:
        violations.append(restart)
    if violations:
        held.append(Reason(code="policy", message="refused by the disruption policy (cluster.toml)",
                           violations=violations))
    if coro and not inp.can_rollout:
        held.append(Reason(code="unsupported", message=f"the corosync.conf change ({coro_class}) is rolled "
                           "out node by node by the agents (`ha-gitops agent` on every node); this command "
                           "can only write the CIB, so it applies nothing of this revision"))
    if held:
        # The corosync.conf rollout of a bad revision still runs: it is what puts the old file back.
        rolling_back = marker.corosync_bad == rev and all(r.code in _ROLLOUT_RUNS_DESPITE for r in held)
        return done("refuse", held, _held_drift(inp, suspended=marker.suspended), rollout=rolling_back)
    deleted = deletions(cib.changes)
    if first and deleted and not inp.adopt:
        names = ", ".join(f"{c.kind} {c.id}" for c in deleted[:5]) + (" ..." if len(deleted) > 5 else "")
        reasons = [Reason(code="first-contact", message=f"ha-gitops never managed this cluster and the "
                          f"revision deletes {len(deleted)} object(s) ({names}): nothing is written until "
                          "`ha-gitops adopt` (on any node) confirms it")]
        return done("wait", reasons + _waits(inp))
    waits = _waits(inp) if cib.changes or not accepted else []
    if cib.changes and writes and not waits:
        waits = _secrets_pending(inp)
    if waits:
        return done("wait", waits, _overwritten_drift(inp), rollout=accepted)
    return done("apply", rollout=True, record=not accepted and not cib.changes, drift=_overwritten_drift(inp))


def _online(inp: DecideInput) -> list[str]:
    return [n.name for n in inp.status.nodes if n.online]


def _undecryptable(inp: DecideInput) -> list[Reason]:
    """A node that says it cannot decrypt this secrets.age refuses the revision whole (every node needs
    the values: a resource may run anywhere)."""
    state = inp.state
    if state is None or not state.secret_params:
        return []
    bad = undecryptable(node_signals(inp.live), _online(inp), state.secrets_file)
    return [Reason(code="secrets", message=f"node {node} cannot decrypt secrets.age: {cause}; nothing of "
                   "this revision is applied") for node, cause in bad]


def _secrets_pending(inp: DecideInput) -> list[Reason]:
    """The CIB change that refers to a secret waits until every online node's store holds its value."""
    state = inp.state
    if state is None:
        return []
    nodes = pending(node_signals(inp.live), _online(inp), store_digest(state.secret_params))
    if not nodes:
        return []
    return [Reason(code="secrets-pending", message="waiting for the secrets store of node(s) "
                   f"{', '.join(nodes)} to hold this revision's secrets before writing the CIB")]


def secret_changes(state: DesiredState, store: Mapping[tuple[str, str], str | None] | None
                   ) -> list[SecretChange]:
    """Each secret parameter: changed (this node's store does not hold the value) or unchanged."""
    out = []
    for p in state.secret_params:
        value = state.secret_values.get(p.name)
        if store is None or value is None:
            st: Literal["changed", "unchanged", "unknown"] = "unknown"
        else:
            st = "unchanged" if store.get((p.resource, p.param)) == store_sign(value) else "changed"
        out.append(SecretChange(resource=p.resource, param=p.param, name=p.name, fingerprint=p.fingerprint,
                                state=st))
    return out


def _invalid(errors: Sequence[Finding]) -> Reason:
    return Reason(code="invalid", message=f"invalid desired state ({len(errors)} error(s)); nothing of this "
                  "revision is applied", findings=list(errors))


def decide_against_base(*, revision: str | None, base: str, state: DesiredState | None,
                        findings: Sequence[Finding], cib: CibPlan | None, base_corosync: str | None,
                        now: datetime) -> Decision:
    """`plan --base REV`: the head desired state against the desired state at REV instead of a cluster
    (`cib` was diffed against REV's configuration, `base_corosync` is REV's corosync.conf). The rules
    that need no cluster are the same as decide's: invalid is refused, the corosync.conf change class and
    its policy, the deletions allowed; those that need one (the predicted impact: protect, max_restarts,
    allow_fencing; quorum, the DC, drift, the marker's switches) are left to `plan` on a node or
    `plan --live SNAPSHOT`, and a note says so."""
    findings = list(findings)
    errors = [f for f in findings if f.severity == "error"]
    if revision is None and state is not None:
        revision = f"digest:{state.digest[:16]}"  # a folder as on disk, like `plan --dir`
    basis = Basis(revision=revision)
    if state is None or cib is None or errors:
        plan = Plan(cluster=state.name if state else "cluster", revision=revision)
        return Decision(verdict="refuse", reasons=[_invalid(errors)], plan=plan, basis=basis,
                        findings=findings)
    basis.desired_digest, basis.config_digest = state.digest, cib.digest
    basis.corosync_desired_digest = text_digest(state.corosync_text)
    coro, coro_class = corosync_part(state, base_corosync)
    plan = plan_of(state.name, revision, cib, coro, coro_class)
    plan.notes.append(f"compared with the desired state at {base}, not with a cluster: no impact predicted; "
                      "the rules that need the cluster (protect, max_restarts, allow_fencing, quorum, "
                      "drift) are checked by `plan` on a node or `plan --live SNAPSHOT`")
    violations = check_disruption(Impact(), state.policy, now, changes=cib.changes)
    restart = check_corosync_restart(coro_class, state.policy, now)
    if restart is not None:
        violations.append(restart)
    if violations:
        return Decision(verdict="refuse", plan=plan, basis=basis, findings=findings, reasons=[
            Reason(code="policy", message="refused by the disruption policy (cluster.toml)",
                   violations=violations)])
    return Decision(verdict="apply" if plan.changed else "no-change", plan=plan, basis=basis,
                    findings=findings)


def _waits(inp: DecideInput) -> list[Reason]:
    if inp.role == "observer":
        return [Reason(code="not-writer", message=f"the agent on the DC ({inp.status.dc or '-'}) writes the "
                       "CIB")]
    if inp.status.dc is None and inp.role == "writer":
        return [Reason(code="no-dc", message="the cluster has no DC (an election is under way)")]
    if not inp.status.quorate:
        return [Reason(code="no-quorum", message="the cluster is not quorate: nothing is written")]
    return []


def _rollout_may_run(inp: DecideInput) -> bool:
    """Nothing differs here, but a rollout of this revision may be under way on other nodes."""
    return not inp.marker.suspended and not (inp.marker.pinned and inp.marker.pinned == inp.revision)


def _held_drift(inp: DecideInput, *, suspended: bool) -> Drift | None:
    """While the head is held (refused, pinned, bad), a hand edit is compared with the configuration the
    last ha-gitops write left: recorded always, corrected unless suspended or drift_mode says not."""
    if inp.last_write is None or inp.drift_mode == "off":
        return None
    changes = drift_against(inp.live, inp.last_write, inp.state)
    if not changes:
        return None
    return Drift(target="last-write", changes=changes,
                 correct=inp.drift_mode == "correct" and not suspended and not _waits(inp))


def _overwritten_drift(inp: DecideInput) -> Drift | None:
    """A new revision goes over a hand edit made since the last ha-gitops write: the edit is recorded (with
    who made it) before the apply replaces it, so no hand edit vanishes unrecorded. Not corrected: the
    apply itself replaces it."""
    if inp.marker.kind == "stop-first":
        return None  # the writer's own state between its stop-first write and the deletion
    return _held_drift(inp, suspended=True)


def decide_rollback(target: etree._Element, live: etree._Element, status: ClusterStatus, marker: Marker, *,
                    event_id: int | str, pin: str | None) -> Decision:
    """`ha-gitops rollback ID`: restore the configuration from before event ID (an operator's explicit
    choice: no disruption policy), only while the cluster is quorate; its revision is pinned."""
    changes = drift_against(live, target, None)
    plan = Plan(cluster="cluster", revision=pin, cib_changes=changes,
                notes=[f"rollback to the configuration before audit event {event_id}"])
    plan.steps = plan_steps(plan)
    basis = Basis(revision=pin, cib_version=live_version(live))
    if not status.quorate:
        return Decision(verdict="wait", plan=plan, basis=basis, reasons=[
            Reason(code="no-quorum", message="the cluster is not quorate: nothing is written")])
    return Decision(verdict="apply" if changes else "no-change", plan=plan, basis=basis)


def stale_plan(saved: Decision, now: Decision) -> list[str]:
    """What moved between a saved plan and the decision made now (empty: the saved plan still holds).

    The saved plan is applied only as it is: same revision, same desired content, same live CIB version
    and corosync.conf, the same changes and the same verdict."""
    moved: list[str] = []
    a, b = saved.basis, now.basis
    for field_name, label in (("revision", "the revision"), ("desired_digest", "the desired folder"),
                              ("config_digest", "the effective configuration"),
                              ("cib_version", "the live CIB version (admin_epoch.epoch)"),
                              ("corosync_digest", "this node's corosync.conf")):
        old, new = getattr(a, field_name), getattr(b, field_name)
        if old != new:
            moved.append(f"{label}: {old or '-'} -> {new or '-'}")
    if not moved:
        dump = lambda d: (d.plan.model_dump(mode="json", include={"cib_changes", "corosync_changes"}))  # noqa: E731
        if dump(saved) != dump(now):
            moved.append("the planned changes differ")
        if saved.verdict != now.verdict:
            moved.append(f"the verdict: {saved.verdict} -> {now.verdict}")
    return moved
