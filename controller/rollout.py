"""The corosync.conf rollout (issue 5): each node's agent writes its own file, in an order the CIB sets.

No SSH and no second election: each agent acts on its own node only, and the agents talk through
permanent node attributes in the CIB, which Pacemaker replicates to every node:

    ha-gitops-corosync          "DIGEST:CLASS"  this node's corosync.conf is the desired one (and the class
                                                of the change it made, so later passes know the flow)
    ha-gitops-corosync-applied  "DIGEST"        this node *runs* it (cmap verified after a reload, or
                                                corosync restarted with it)
    ha-gitops-corosync-restart  "DIGEST"        cluster-restart: the driver asks every node to restart now
    ha-gitops-corosync-driven   "ROLLOUT:STEP"  a driver's step this node took: `reload` (it issued
                                                corosync-cfgtool -R), `healthy`, `rollback-reload`

A rollout is named by `rollout_id` (the digest and the revision that started it, carried in the file
attribute): every timer and memory of it is keyed by that, so a revert to a file rolled out before is
a rollout like any other. A driver's step (the first node's: the reload, the cluster restart request,
the health check, a rollback's final reload) that is not taken `[rollout] takeover_timeout` after the
last attribute change is taken by the next node in the order; a node's own step that cannot be taken
for it (writing its file) abandons the rollout, and the nodes that wrote restore their previous file.

The order is standby nodes first (by name), then the others (by name). A node acts only when every node
before it has reported and the gate holds (quorate, every node online; for a restart also: the votes
left while this node is down still make quorum). The semantic CIB diff ignores these attributes
(controller.cib.marker.NODE_ATTR_RULE), so writing them is not drift.

`plan_next` is pure (the whole decision, unit-tested); `CorosyncRollout` observes, calls it, and does
the one action it returns. One action per call; the agent is woken again while a rollout is under way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from controller import faults
from controller.audit.models import NewEvent
from controller.audit.store import AuditStore
from controller.cib.marker import Marker, read_marker
from controller.cluster.adapter import LiveCluster
from controller.cluster.cib_writer import QUORUM_ONLY, LostLeadership, write_marker_only
from controller.cluster.models import ClusterStatus
from controller.corosync import diff_corosync, highest_class, parse_corosync
from controller.corosync.diff import ChangeClass
from controller.corosync.rollout_plan import (  # noqa: F401  (re-exported: the planner is part of the rollout)
    ATTR_APPLIED,
    ATTR_DRIVEN,
    ATTR_FILE,
    ATTR_RESTART,
    Action,
    Gate,
    PeerState,
    RolloutInput,
    expected_runtime,
    gate_problem,
    peers,
    plan_next,
    rollout_id,
    rollout_order,
    text_digest,
)
from controller.desired.policy import ClusterPolicy
from controller.desired.state import DesiredState
from controller.disruption import check_corosync_restart
from controller.errors import HaGitopsError
from controller.failures import FailureReason
from controller.health import health_problems
from controller.notifications import NotifyTarget, route

log = logging.getLogger("ha-gitops.rollout")
Details = dict[str, object]  # an audit event's details: JSON values

CONF_PATH = Path("/etc/corosync/corosync.conf")
BACKUP_SUFFIX = ".ha-gitops-prev"
WAKE_REASON = "corosync-rollout"  # the agent's trigger for a pass the rollout asked for


# ---------------------------------------------------------------------------------------------- the executor
class StepResult(BaseModel):
    action: str
    reason: str = ""
    change_class: ChangeClass | None = None
    digest: str
    position: int = 0
    order: list[str] = Field(default_factory=list)
    ok: bool = True
    error: str | None = None
    events: list[int] = Field(default_factory=list)
    duration: float = 0.0
    bad: bool = False  # this revision's corosync.conf was rolled back: not retried until a newer commit


class RolloutFailed(HaGitopsError):
    pass


def _file_value(action: Action) -> str:
    """ATTR_FILE for a node that wrote the desired file in this rollout: DIGEST:CLASS:START."""
    digest, _, start = action.rollout.partition(".")
    return f"{digest}:{action.change_class or ''}:{start}"


class CorosyncRollout:
    """The `CorosyncStep` the agent hangs on its Reconciler: one planner action per pass."""

    def __init__(self, *, node: str, cluster: LiveCluster, store: AuditStore, service_command: Sequence[str],
                 conf_path: Path = CONF_PATH, wake: Callable[[str], None] | None = None,
                 poll_interval: float = 1.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.node = node
        self.cluster = cluster
        self.store = store
        self.service_command = list(service_command)
        # `[[notify]]` targets: this node's rollout steps are its own events (no other node records them).
        self.notify_targets: Sequence[NotifyTarget] = ()
        self.conf_path = conf_path
        self.wake = wake
        self.poll_interval = poll_interval
        # The cluster's limits (cluster.toml [settle] and [rollout]), taken from the desired state at each
        # step; until the first step, their defaults.
        self._limits(ClusterPolicy())
        # Per rollout (rollout_id), in memory: a new rollout of the same digest starts them afresh.
        self._verify_since: dict[str, float] = {}  # first runtime check after the reload was seen
        self._fast_since: dict[str, float] = {}  # when fast verify polling began
        self._progress: dict[str, tuple[str, float]] = {}  # the rollout attributes seen, and since when
        self.now = now
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------ observe
    def observe(self, desired_text: str, status: ClusterStatus, restart_refusal: str | None,
                revision: str = "") -> RolloutInput:
        cib = self.cluster.read_cib()
        local = self._read_local()
        backup = self._backup_path()
        previous = backup.read_text(encoding="utf-8", errors="surrogateescape") if backup.exists() else None
        desired_digest = text_digest(desired_text)
        local_class: ChangeClass | None = None
        if local is not None and text_digest(local) != desired_digest:
            local_class = self._class(local, desired_text)
        try:
            q = self.cluster.quorum()
            gate = Gate(quorate=q.quorate and bool(status.quorate), total_votes=q.total_votes,
                        quorum=q.quorum)
            votes = {m.name: m.votes for m in q.members}
        except HaGitopsError:
            gate, votes = Gate(quorate=False), {}
        nodes = peers(cib, status, votes)
        rid = rollout_id(nodes, desired_digest, revision)
        return RolloutInput(
            node=self.node, desired_digest=desired_digest, revision=revision,
            local_digest=text_digest(local) if local is not None else None, local_class=local_class,
            nodes=nodes, gate=gate, restart_refusal=restart_refusal,
            restarted=self.store.get_state("corosync-restarted", scope=self.node) == rid,
            bad=bool(revision) and read_marker(cib).corosync_bad == revision,
            previous_digest=text_digest(previous) if previous is not None else None,
            stalled_for=self._stalled_for(rid, nodes), takeover_after=self.takeover_timeout)

    def _stalled_for(self, rid: str, nodes: Sequence[PeerState]) -> float:
        """Seconds since the rollout attributes of the nodes (or who is online) last changed, as this
        node saw them: measured on this node's clock from what it observed, never from peers' clocks."""
        seen = repr([(n.name, n.online, n.file, n.applied, n.restart, n.driven) for n in nodes])
        now = time.monotonic()
        last = self._progress.get(rid)
        if last is None or last[0] != seen:
            self._progress = {rid: (seen, now)}  # only the rollout under way is remembered
            return 0.0
        return now - last[1]

    def _backup_path(self) -> Path:
        return self.conf_path.with_name(self.conf_path.name + BACKUP_SUFFIX)

    def _read_local(self) -> str | None:
        try:
            return self.conf_path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return None

    def _class(self, old: str, new: str) -> ChangeClass:
        try:
            changes = diff_corosync(parse_corosync(old, source=str(self.conf_path)),
                                    parse_corosync(new, source="desired corosync.conf"))
        except HaGitopsError:
            return "rolling-restart"  # an unparsable live file: restart (never reload) onto the good one
        return highest_class(changes) or "reload"  # text differs, meaning does not: a reload is harmless

    # ------------------------------------------------------------------ the step
    def _limits(self, policy: ClusterPolicy) -> None:
        self.settle_timeout = policy.settle.timeout.total_seconds()  # resources to leave a node
        self.verify_timeout = policy.rollout.verify_timeout.total_seconds()
        self.rejoin_timeout = policy.rollout.rejoin_timeout.total_seconds()
        self.takeover_timeout = policy.rollout.takeover_timeout.total_seconds()

    def step(self, *, state: DesiredState, desired: object, revision: str, status: ClusterStatus,
             leader: bool, trigger: str) -> StepResult:
        started = time.monotonic()
        text = state.corosync_text
        self._limits(state.policy)
        refusal = check_corosync_restart("cluster-restart", state.policy, self.now())
        inp = self.observe(text, status, str(refusal) if refusal else None, revision)
        action = plan_next(inp)
        res = StepResult(action=action.kind, reason=action.reason, change_class=action.change_class,
                         digest=inp.desired_digest, position=action.position, order=action.order, bad=inp.bad)
        rid = action.rollout
        saved = self.store.get_state("corosync-before", scope=self.node) or {}
        if saved.get("rollout") != rid and not inp.bad \
                and action.kind in ("write-file", "restart-self", "reload", "cluster-restart"):
            # Every node keeps the cluster's state from before its first step (whoever checks the
            # health after the rollout, the driver or a node taking over, blames only what is new).
            self.store.set_state("corosync-before", {"rollout": rid,
                                                     "status": status.model_dump(mode="json")},
                                 scope=self.node)
        base: Details = {"node": self.node, "class": action.change_class, "digest": inp.desired_digest,
                "position": action.position, "order": action.order, "revision": revision,
                "rollout": rid, "trigger": trigger}
        if action.takeover_from:
            base["takeover_from"] = action.takeover_from
        try:
            if action.kind == "wait" and action.in_progress:
                self._paused(inp, action, base, res)
            elif action.kind == "refuse":
                if self._once("corosync-refused", rid):
                    res.events.append(self._event("refused", "refused", f"corosync.conf {inp.desired_digest} "
                                                  f"refused: {action.reason}", base, error=action.reason))
            elif action.kind == "report":
                self._report(inp, action)
            elif action.kind == "write-file":
                self._write(text, inp, action, base, res)
            elif action.kind == "reload" and inp.bad:
                d = inp.desired_digest
                output = self.cluster.reload_corosync()
                self._reassert_expected_votes()
                self._set_attr(self.node, ATTR_DRIVEN, f"{rid}:rollback-reload")
                res.events.append(self._event("rollout-step", "success", f"rollback of corosync.conf {d}: "
                                              f"final corosync-cfgtool -R by {self.node}"
                                              + self._taking(action),
                                              {**base, "step": "rollback-reload", "output": output}))
            elif action.kind == "abandon":
                self._fail(inp, action, base, res, revision, f"rollout abandoned: {action.reason}",
                           reason="RolloutAbandoned")
            elif action.kind == "reload":
                self._reload(inp, action, base, res)
                time.sleep(0.2)  # cmap is updated asynchronously after -R
                self._verify(text, inp, action, base, res, revision, [self.node])
            elif action.kind == "verify":
                self._verify(text, inp, action, base, res, revision,
                             [n.name for n in inp.nodes if n.drove(rid, "reload", "healthy")])
            elif action.kind == "restart-self":
                try:
                    self._restart_self(text, inp, action, base, res)
                except HaGitopsError as exc:
                    if isinstance(exc, LostLeadership) or \
                            text_digest(self._read_local() or "") != inp.desired_digest:
                        raise  # nothing was written (or a report skipped for want of quorum): no rollback
                    self._fail(inp, action, base, res, revision, f"restart with the new file failed: {exc}")
            elif action.kind == "check-health":
                self._check_health(state, inp, action, base, res, revision)
            elif action.kind == "restore":
                self._restore(inp, action, base, res)
            elif action.kind == "cluster-restart":
                for n in inp.nodes:
                    self._set_attr(n.name, ATTR_RESTART, inp.desired_digest, guard=True)
                res.events.append(self._event("rollout-step", "success", "cluster restart requested on "
                                              f"every node by {self.node}" + self._taking(action),
                                              {**base, "step": "cluster-restart"}))
        except HaGitopsError as exc:
            res.ok, res.error = False, str(exc)
            # A marker write the guard skipped (no quorum) says so: it did not fail, it was not made.
            skipped = exc if isinstance(exc, LostLeadership) else None
            res.events.append(self._event("error", "failure", f"corosync.conf rollout stopped on {self.node} "
                                          f"({action.kind}): {exc}"[:300], {**base, "step": action.kind,
                                                                         "stage": "rollout",
                                                                         **(skipped.details() if skipped
                                                                            else {}),
                                                                         "reason": skipped.reason if skipped
                                                                         else "RolloutFailed"},
                                          error=str(exc)))
        if action.in_progress and action.kind != "refuse":
            # cmap catches up with a reload in well under a second and no CIB write tells the others
            fast = action.kind in ("reload", "verify") and \
                time.monotonic() - self._fast_since.setdefault(rid, time.monotonic()) < 15
            self._poll_later(0.3 if fast else 2 * self.poll_interval)  # a verify that never takes backs off
        if action.in_progress or action.kind not in ("nothing", "wait"):
            log.info("corosync.conf %s: %s (%s)%s", rid, action.kind, res.reason,
                     f" failed: {res.error}" if res.error else "")
        res.duration = round(time.monotonic() - started, 3)
        return res

    # ------------------------------------------------------------------ actions
    def _write(self, text: str, inp: RolloutInput, action: Action, base: Details,
               res: StepResult) -> None:
        faults.pause("rollout-before-write")
        problem = self.validate(text)
        if problem is not None:
            res.ok, res.error = False, problem
            if self._once("corosync-invalid", action.rollout):
                res.events.append(self._event("refused", "refused", f"corosync.conf {inp.desired_digest} "
                                              f"fails `corosync -t` on {self.node}; no file written",
                                              {**base, "step": "validate"}, error=problem))
            return
        self.install(text)
        self._set_attr(self.node, ATTR_FILE, _file_value(action))
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} "
                                      f"written on {self.node} ({action.position}/{len(action.order)})",
                                      {**base, "step": "write-file"}))
        faults.pause("rollout-after-write")

    def _report(self, inp: RolloutInput, action: Action) -> None:
        if inp.bad and inp.local_digest:  # rolled back: this node runs its previous file again
            self._set_attr(self.node, ATTR_FILE, f"{inp.local_digest}:")
            self._set_attr(self.node, ATTR_APPLIED, inp.local_digest)
            return
        if inp.restarted and inp.local_digest == inp.desired_digest:
            self._set_attr(self.node, ATTR_FILE, _file_value(action))
            self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
            return
        if action.change_class is None:  # nothing to apply: the node already runs this file
            self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:")
            self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
            return
        self._set_attr(self.node, ATTR_FILE, _file_value(action))

    def _reassert_expected_votes(self) -> None:
        """After a rollback reload, votequorum can keep the quorum of the bad file (seen: expected 3,
        quorum 4, activity blocked) until expected votes are set again: set them from the restored file."""
        time.sleep(0.5)  # cmap and votequorum catch up asynchronously after -R
        try:
            if self.cluster.quorum().quorate:
                return
            restored = parse_corosync(self.conf_path.read_text(encoding="utf-8", errors="surrogateescape"),
                                      source=str(self.conf_path))
        except (HaGitopsError, OSError):
            return
        expected = restored.get("quorum.expected_votes")
        if expected and expected.isdigit():
            self.cluster.set_expected_votes(int(expected))

    def _reload(self, inp: RolloutInput, action: Action, base: Details, res: StepResult) -> None:
        # The exit code of -R proves nothing: every node's cmap does (each verifies its own, `verify`).
        # The attribute tells the others that the reload happened (their verify clock starts when they
        # see it), and when no node says so, that the driver did not act: its turn is taken over.
        output = self.cluster.reload_corosync()
        self._set_attr(self.node, ATTR_DRIVEN, f"{action.rollout}:reload")
        res.events.append(self._event("rollout-step", "success", f"corosync-cfgtool -R issued by {self.node}"
                                      + self._taking(action), {**base, "step": "reload", "output": output}))

    @staticmethod
    def _taking(action: Action) -> str:
        return f" (taking over from {action.takeover_from}: {action.reason.split(': ', 1)[-1]})" \
            if action.takeover_from else ""

    def _verify(self, text: str, inp: RolloutInput, action: Action, base: Details, res: StepResult,
                revision: str, reloaded_by: Sequence[str]) -> None:
        problems = self.runtime_problems(text)
        if problems:
            res.reason = "runtime not there yet: " + "; ".join(problems)
            # From the first check after this node saw the reload (the verify action comes only then).
            since = self._verify_since.setdefault(action.rollout, time.monotonic())
            if time.monotonic() - since > self.verify_timeout:
                who = ", ".join(reloaded_by) or self.node
                self._fail(inp, None, base, res, revision, f"runtime still differs {self.verify_timeout:g}s "
                           f"after the reload by {who}: " + "; ".join(problems), problems=problems)
            return
        self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
        res.events.append(self._event("rollout-step", "success", f"runtime of corosync.conf "
                                      f"{inp.desired_digest} verified on {self.node}",
                                      {**base, "step": "verified"}))

    def _restart_self(self, text: str, inp: RolloutInput, action: Action, base: Details,
                      res: StepResult) -> None:
        me = next(n for n in inp.nodes if n.name == self.node)
        cluster_restart = me.restart == inp.desired_digest
        if inp.local_digest != inp.desired_digest:
            problem = self.validate(text)
            if problem is not None:
                res.ok, res.error = False, problem
                if self._once("corosync-invalid", action.rollout):
                    res.events.append(self._event("refused", "refused", f"corosync.conf {inp.desired_digest}"
                                                  f" fails `corosync -t` on {self.node}; no file written",
                                                  {**base, "step": "validate"}, error=problem))
                return
        t0 = time.monotonic()
        standby = not me.standby and not cluster_restart
        try:
            if standby:
                self._standby(True)
                self._wait(lambda: not self._resources_here(), self.settle_timeout,
                           "resources to leave " + self.node)
            if inp.local_digest != inp.desired_digest:
                self.install(text)
                self._set_attr(self.node, ATTR_FILE, _file_value(action))
                res.events.append(self._event("rollout-step", "success", f"corosync.conf "
                                              f"{inp.desired_digest} written on {self.node}",
                                              {**base, "step": "write-file"}))
            t1 = time.monotonic()
            alone = self.cluster.restart_stack(self.service_command,
                                               peers_timeout=self.rejoin_timeout if cluster_restart else None)
            if not alone:
                log.warning("cluster restart: another node's pacemaker was still running after %.0fs; "
                            "%s restarted corosync anyway", self.rejoin_timeout, self.node)
            self.store.set_state("corosync-restarted", action.rollout, scope=self.node)
            # A cluster restart is back only when the cluster formed again: a node that came back
            # alone (an authkey or a network that differs between nodes) must fail within the timeout,
            # not wait for the others for ever. The others restart at the same time, in the same window.
            what = ("the cluster to form again with every node" if cluster_restart
                    else f"{self.node} to rejoin a quorate cluster")
            self._wait(self._rejoined, self.rejoin_timeout, what)
            down = round(time.monotonic() - t1, 2)
        finally:
            if standby:
                with contextlib.suppress(HaGitopsError):  # a reboot-lifetime one is gone after a restart
                    self._standby(False)
        self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
        res.events.append(self._event("rollout-step", "success", f"{self.node} restarted with corosync.conf "
                                      f"{inp.desired_digest} ({action.position}/{len(action.order)})",
                                      {**base, "step": "restarted", "restart_seconds": down,
                                       "seconds": round(time.monotonic() - t0, 2)}))

    def _check_health(self, state: DesiredState, inp: RolloutInput, action: Action, base: Details,
                      res: StepResult, revision: str) -> None:
        """The driver, once every node runs the new file: settled and healthy, or roll back."""
        timeout = state.policy.settle.timeout.total_seconds()
        deadline, settled = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            # --wait can return before a fresh transition began: also no resource in a transient role
            settled = self.cluster.wait_settled(max(deadline - time.monotonic(), 1))
            if settled and not any(r.role.endswith("ing") for r in self.cluster.status().resources):
                break
            settled = False
            time.sleep(0.3)
        after = self.cluster.status()
        saved = self.store.get_state("corosync-before", scope=self.node) or {}
        before = ClusterStatus.model_validate(saved["status"]) \
            if saved.get("rollout") == action.rollout else after
        problems = [p.message for p in health_problems(before, after)]
        if not settled:
            problems.append(f"the cluster did not settle within {timeout:g}s")
        if problems:
            self._fail(inp, action, base, res, revision, "cluster unhealthy after the rollout: "
                       + "; ".join(problems), problems=problems)
            return
        self._set_attr(self.node, ATTR_DRIVEN, f"{action.rollout}:healthy")
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} runs "
                                      "on every node; the cluster is healthy" + self._taking(action),
                                      {**base, "step": "healthy"}))

    def _fail(self, inp: RolloutInput, action: Action | None, base: Details, res: StepResult,
              revision: str, why: str, problems: Sequence[str] = (),
              reason: FailureReason = "RolloutFailed") -> None:
        """Verify failed (or the rollout was abandoned): record it, mark the revision bad (the marker
        reaches every agent), roll back."""
        res.ok, res.error, res.bad = False, why, True
        verify = self._event("verify", "failure",
                             f"corosync.conf {inp.desired_digest} failed on {self.node}: {why}"[:300],
                             {**base, "step": "verify", "problems": list(problems), "stage": "rollout",
                              "reason": reason}, error=why)
        res.events.append(verify)
        restored_here = False
        try:
            first = self._mark_bad(revision)
        except HaGitopsError:
            # This node is out of the cluster (it did not rejoin): put its own file back first.
            self._restore(inp, Action(kind="restore", restart=True), base, res)
            restored_here = True
            # Back in the cluster: another node that failed the same way may have marked it first.
            first = self._mark_bad(revision)
        if not first:
            # Another node failed it first (each node checks its own runtime): its auto-rollback is the
            # one; this node's finding is recorded above and it restores on its next pass.
            return
        res.events.append(self._event(
            "auto-rollback", "success", f"auto-rollback of corosync.conf {inp.desired_digest} "
            f"({revision[:12]}): every node that wrote it restores its previous file; revision marked bad",
            {**base, "step": "auto-rollback", "bad_revision": revision, "verify_event": verify,
             "restored_here": restored_here}, error=why))

    def _mark_bad(self, revision: str) -> bool:
        """Mark the revision bad in the marker; False when another node's mark was there first.

        The write is version-checked: of two nodes marking at once, the second re-reads and finds the
        first one's mark, so exactly one of them gets True.
        """
        already: list[bool] = []

        def mark(m: Marker) -> Marker:
            already.append(m.corosync_bad == revision)
            return m.model_copy(update={"corosync_bad": revision})

        # Any node's agent marks (each checks its own runtime), so quorum is needed, not DC-ship: a mark
        # from a node cut off from the others (LostLeadership) is left to the nodes that are not.
        write_marker_only(self.cluster, mark, guard=QUORUM_ONLY)
        return not already[-1]

    def _restore(self, inp: RolloutInput, action: Action, base: Details, res: StepResult) -> None:
        """Put corosync.conf.ha-gitops-prev back, then reload or restart onto it, then report."""
        previous = self._backup_path().read_text(encoding="utf-8", errors="surrogateescape")
        t0 = time.monotonic()
        if self._read_local() != previous:
            self.install(previous, keep_backup=False)
        if action.restart:
            self.cluster.restart_stack(self.service_command)
            self._wait(lambda: self._rejoined(everyone=False), self.rejoin_timeout,
                       f"{self.node} to come back with its previous corosync.conf")
        else:
            self.cluster.reload_corosync()
        prev = text_digest(previous)
        self._set_attr(self.node, ATTR_FILE, f"{prev}:")
        self._set_attr(self.node, ATTR_APPLIED, prev)
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} rolled "
                                      f"back on {self.node}: previous file {prev} restored and "
                                      + ("restarted" if action.restart else "reloaded"),
                                      {**base, "step": "restored", "previous": prev,
                                       "seconds": round(time.monotonic() - t0, 2)}))

    def _paused(self, inp: RolloutInput, action: Action, base: Details, res: StepResult) -> None:
        """A gate that stops a rollout under way is recorded once, with where it stopped."""
        gate = gate_problem(inp)
        key = f"{inp.rollout}:{'paused' if gate else 'running'}"
        if gate and self._once("corosync-gate", key):
            done = [n.name for n in inp.nodes if n.has_file(inp.desired_digest)]
            res.events.append(self._event("rollout-step", "skipped", f"corosync.conf rollout paused on "
                                          f"{self.node}: {gate}", {**base, "step": "paused", "reason": gate,
                                                                  "done": done}))
        elif not gate and self.store.get_state("corosync-gate", scope=self.node) == \
                f"{inp.rollout}:paused":
            self._once("corosync-gate", key)
            res.events.append(self._event("rollout-step", "success", f"corosync.conf rollout resumes on "
                                          f"{self.node}", {**base, "step": "resumed"}))

    # ------------------------------------------------------------------ effects
    def validate(self, text: str) -> str | None:
        """`corosync -t` on a candidate next to the live file (same directory: uidgid.d is found)."""
        cand = self.conf_path.with_name("." + self.conf_path.name + ".ha-gitops-candidate")
        cand.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            return self.cluster.check_corosync_conf(str(cand))
        finally:
            cand.unlink(missing_ok=True)

    def install(self, text: str, keep_backup: bool = True) -> None:
        """Atomically replace the file (temp + rename in its directory), the previous one kept."""
        current = self._read_local()
        if current is not None and keep_backup:
            backup = self.conf_path.with_name(self.conf_path.name + BACKUP_SUFFIX)
            backup.write_text(current, encoding="utf-8", errors="surrogateescape")
        tmp = self.conf_path.with_name("." + self.conf_path.name + ".ha-gitops-tmp")
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if self.conf_path.exists():
            st = self.conf_path.stat()
            os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, self.conf_path)

    def runtime_problems(self, text: str) -> list[str]:
        """What cmap on this node shows that differs from a reload of `text` (empty: it took)."""
        problems: list[str] = []
        if (self.cluster.cmap_get("config.totemconfig_reload_in_progress") or "0") not in ("0", ""):
            problems.append("config.totemconfig_reload_in_progress is set (the file did not load here)")
        backup = self._backup_path()
        if not backup.exists():
            return problems
        old = parse_corosync(backup.read_text(encoding="utf-8", errors="surrogateescape"), source=str(backup))
        new = parse_corosync(text, source="desired corosync.conf")
        totem = new.root.sections("totem")[0].items() if new.root.sections("totem") else {}
        for key, want in expected_runtime(diff_corosync(old, new), totem).items():
            have = self.cluster.cmap_get(key)
            if not want.matches(have):
                problems.append(f"{key} = {have} (expected {want.value}"
                                + (f" + k*{want.coefficient}" if want.coefficient else "") + ")")
        return problems

    def _set_attr(self, node: str, name: str, value: str, *, guard: bool = False) -> None:
        """A rollout attribute. A request that makes other nodes act (`guard`: the cluster restart
        request) is made only with quorum, checked again right before it (one corosync-quorumtool and
        the <cib> element): from a partition without quorum it could win the CIB merge after heal and
        restart nodes the majority never agreed to. Nodes write their own attributes, so DC-ship is not
        asked. A node's report of what it did (file written, reload issued, runtime verified, file
        restored) is a fact wherever it is written, and is needed most when the change itself broke
        quorum (a reload that loses quorum is judged and rolled back through these reports)."""
        if guard:
            QUORUM_ONLY.check(self.cluster)  # LostLeadership: recorded as a skipped write (LostQuorum)
        self.cluster.set_node_attribute(node, name, value)

    def _standby(self, on: bool) -> None:
        if on:
            QUORUM_ONLY.check(self.cluster)  # leaving standby after a restart is never held back
        # Reboot lifetime (status section): the desired CIB owns the permanent standby attribute (the
        # DC's agent would undo a permanent one as drift), and a transient one cannot outlive a restart.
        self.cluster.set_standby(self.node, on, lifetime="reboot")

    def _resources_here(self) -> bool:
        st = self.cluster.status()
        return any(r.active and self.node in r.nodes and not r.agent.startswith("stonith:")
                   for r in st.resources)

    def _rejoined(self, everyone: bool = True) -> bool:
        try:
            st = self.cluster.status()
            if not everyone:
                me = st.node(self.node)
                return me is not None and me.online
            q = self.cluster.quorum()
        except HaGitopsError:
            return False
        me = st.node(self.node)
        return bool(q.quorate and st.quorate and st.dc and me is not None and me.online
                    and all(n.online for n in st.nodes))

    def _wait(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ok():
                    return
            except HaGitopsError:
                pass  # the stack is restarting: its tools fail for a while
            time.sleep(0.2)
        raise RolloutFailed(f"timed out after {timeout:g}s waiting for {what} ({self._seen()})")

    def _seen(self) -> str:
        """What this node sees of the cluster, for a timeout's message: the why of a failed rejoin."""
        try:
            st = self.cluster.status()
        except HaGitopsError as exc:
            return f"no cluster status: {str(exc)[:200]}"
        online = sorted(n.name for n in st.nodes if n.online)
        return (f"{'quorate' if st.quorate else 'not quorate'}, online: {', '.join(online) or 'none'}, "
                f"DC: {st.dc or 'none'}")

    def _poll_later(self, delay: float) -> None:
        # Peers report through the CIB (the agent's CIB watch wakes it), this is the fallback and the
        # clock for waits that no CIB write ends (a node coming back, cmap catching up).
        if self.wake is None or (self._timer is not None and self._timer.is_alive()):
            return
        self._timer = threading.Timer(delay, self.wake, args=(WAKE_REASON,))
        self._timer.daemon = True
        self._timer.start()

    def _once(self, key: str, value: str) -> bool:
        if self.store.get_state(key, scope=self.node) == value:
            return False
        self.store.set_state(key, value, scope=self.node)
        return True

    def _event(self, kind: str, outcome: str, summary: str, details: Details,
               error: str | None = None) -> int:
        return self.store.append(NewEvent(node=self.node, kind=kind, outcome=outcome, summary=summary,
                                          error=error, details=details),
                                 notify=route(kind, outcome, self.notify_targets)).id
