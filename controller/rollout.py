"""The corosync.conf rollout (issue 5): each node's agent writes its own file, in an order the CIB sets.

No SSH and no second election: each agent acts on its own node only, and the agents talk through
permanent node attributes in the CIB, which Pacemaker replicates to every node:

    ha-gitops-corosync          "DIGEST:CLASS"  this node's corosync.conf is the desired one (and the class
                                                of the change it made, so later passes know the flow)
    ha-gitops-corosync-applied  "DIGEST"        this node *runs* it (cmap verified after a reload, or
                                                corosync restarted with it)
    ha-gitops-corosync-restart  "DIGEST"        cluster-restart: the driver asks every node to restart now

The order is standby nodes first (by name), then the others (by name). A node acts only when every node
before it has reported and the gate holds (quorate, every node online; for a restart also: the votes
left while this node is down still make quorum). The semantic CIB diff ignores these attributes
(controller.cib.marker.NODE_ATTR_RULE), so writing them is not drift.

`plan_next` is pure (the whole decision, unit-tested); `CorosyncRollout` observes, calls it, and does
the one action it returns. One action per call; the agent is woken again while a rollout is under way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, Field

from controller.audit.models import NewEvent
from controller.audit.store import AuditStore
from controller.cib.marker import read_marker
from controller.cluster.adapter import LiveCluster
from controller.cluster.cib_writer import write_marker_only
from controller.cluster.models import ClusterStatus
from controller.command import run
from controller.corosync import diff_corosync, highest_class, parse_corosync
from controller.corosync.diff import ChangeClass, CorosyncChange
from controller.desired.policy import ClusterPolicy
from controller.disruption import check_corosync_restart
from controller.errors import HaGitopsError
from controller.health import health_problems

log = logging.getLogger("ha-gitops.rollout")

ATTR_FILE = "ha-gitops-corosync"
ATTR_APPLIED = "ha-gitops-corosync-applied"
ATTR_RESTART = "ha-gitops-corosync-restart"
CONF_PATH = Path("/etc/corosync/corosync.conf")
BACKUP_SUFFIX = ".ha-gitops-prev"
_CLASS_ORDER: list[ChangeClass] = ["reload", "rolling-restart", "cluster-restart"]

ActionKind = Literal["nothing", "wait", "refuse", "write-file", "reload", "verify", "restart-self",
                     "cluster-restart", "report", "check-health", "restore"]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- the planner
class PeerState(BaseModel):
    """One cluster node as the CIB and crm_mon show it."""

    name: str
    online: bool = True
    standby: bool = False  # configured standby (the desired CIB), not a transient one set by a rollout
    file: str | None = None  # ATTR_FILE value "DIGEST:CLASS"
    applied: str | None = None
    restart: str | None = None
    votes: int = 1

    def has_file(self, digest: str) -> bool:
        return (self.file or "").split(":")[0] == digest

    def file_class(self, digest: str) -> ChangeClass | None:
        d, _, cls = (self.file or "").partition(":")
        return cls if d == digest and cls in _CLASS_ORDER else None  # type: ignore[return-value]


class Gate(BaseModel):
    quorate: bool
    total_votes: int | None = None  # votequorum's view (corosync-quorumtool)
    quorum: int | None = None


class RolloutInput(BaseModel):
    node: str
    desired_digest: str
    local_digest: str | None  # None: no local file
    local_class: ChangeClass | None  # class of local -> desired (None when they are the same)
    nodes: list[PeerState]
    gate: Gate
    restart_refusal: str | None = None  # why a cluster-restart may not run now (policy, window)
    reload_issued: bool = False  # this node already ran corosync-cfgtool -R for this digest
    restarted: bool = False  # this node's corosync was restarted with this digest (local record: survives
                             # a CIB merge that drops the applied attribute written in a lone partition)
    bad: bool = False  # the marker: this revision's rollout failed its verify and is rolled back
    previous_digest: str | None = None  # digest of corosync.conf.ha-gitops-prev (what a rollback restores)
    health_checked: bool = False  # the driver already judged the cluster after this rollout
    rollback_reloaded: bool = False  # the driver issued the final -R of a reload rollback


class Action(BaseModel):
    kind: ActionKind
    reason: str = ""
    change_class: ChangeClass | None = None
    position: int = 0  # 1-based place of this node in the rollout order
    order: list[str] = Field(default_factory=list)
    in_progress: bool = False  # some node has the new digest and some has not: worth waking up for
    restart: bool = False  # restore: restart corosync onto the restored file (else reload it)


def rollout_order(nodes: Sequence[PeerState]) -> list[str]:
    """Standby nodes first (by name), then the others (by name)."""
    return [n.name for n in sorted(nodes, key=lambda n: (not n.standby, n.name))]


def gate_problem(inp: RolloutInput, *, leaving: PeerState | None = None) -> str | None:
    """Why no step may start now (None: it may). `leaving`: the node a restart takes down."""
    if not inp.gate.quorate:
        return "the cluster is not quorate"
    offline = [n.name for n in inp.nodes if not n.online]
    if offline:
        return "not every node is online: " + ", ".join(sorted(offline))
    if leaving is not None:
        total = inp.gate.total_votes if inp.gate.total_votes is not None else sum(n.votes for n in inp.nodes)
        need = inp.gate.quorum if inp.gate.quorum is not None else total // 2 + 1
        if total - leaving.votes < need:
            return (f"restarting {leaving.name} would leave {total - leaving.votes} vote(s); quorum needs "
                    f"{need}")
    return None


def plan_next(inp: RolloutInput) -> Action:
    """The next action of this node in the rollout of `inp.desired_digest` (pure)."""
    d = inp.desired_digest
    order = rollout_order(inp.nodes)
    by_name = {n.name: n for n in inp.nodes}
    me = by_name.get(inp.node)
    if me is None:
        return Action(kind="wait", reason=f"{inp.node} is not a cluster node (yet)", order=order)
    pos = order.index(inp.node) + 1
    has_local = inp.local_digest == d
    classes = [c for c in [None if has_local else inp.local_class,
                           *(n.file_class(d) for n in inp.nodes)] if c]
    cls: ChangeClass | None = max(classes, key=_CLASS_ORDER.index) if classes else None

    def act(kind: ActionKind, reason: str = "", in_progress: bool = True) -> Action:
        return Action(kind=kind, reason=reason, change_class=cls, position=pos, order=order,
                      in_progress=in_progress)

    if inp.bad:
        return _plan_rollback(inp, me, order, pos, cls, act)
    if all(n.applied == d for n in inp.nodes):
        if pos == 1 and cls is not None and not inp.health_checked:
            return act("check-health", "every node runs it: is the cluster healthy?")
        return act("nothing", "every node runs the desired corosync.conf", in_progress=False)
    if has_local and not me.has_file(d):
        # Written (by us before a crash, or by hand) but not reported: report before anything else.
        return act("report", "the local file is the desired one", in_progress=cls is not None)
    if cls is None:
        # Every file that reports was the desired one before any write (a fresh cluster): it runs.
        return act("report", "the local file is the desired one and runs", in_progress=False) \
            if me.applied != d else act("wait", "waiting for the other nodes to report", in_progress=False)
    if cls == "cluster-restart" and inp.restart_refusal and not any(n.restart == d for n in inp.nodes):
        return act("refuse", inp.restart_refusal, in_progress=False)
    if me.restart == d and me.applied != d:
        if inp.restarted and has_local:  # restarted, but the CIB lost the report (partition merge)
            return act("report", "restarted with the new file already")
        return act("restart-self", "the cluster restart was requested")  # no gate: every node goes now

    before = [by_name[n] for n in order[:pos - 1]]
    if cls == "rolling-restart":
        if me.applied == d:
            return act("wait", "this node runs it; waiting for the others")
        if inp.restarted and has_local:
            return act("report", "restarted with the new file already")
        late = [n.name for n in before if n.applied != d]
        if late:
            return act("wait", f"waiting for {', '.join(late)} to restart with the new file")
        problem = gate_problem(inp, leaving=me)
        return act("wait", problem) if problem else act("restart-self", f"position {pos} of {len(order)}")

    # reload and cluster-restart: first every node writes its file, one at a time.
    if not has_local:
        late = [n.name for n in before if not n.has_file(d)]
        if late:
            return act("wait", f"waiting for {', '.join(late)} to write the new file")
        problem = gate_problem(inp)
        return act("wait", problem) if problem else act("write-file", f"position {pos} of {len(order)}")
    missing = [n.name for n in inp.nodes if not n.has_file(d)]
    if missing:
        return act("wait", f"waiting for {', '.join(sorted(missing))} to write the new file")
    if cls == "cluster-restart":
        if any(n.restart == d for n in inp.nodes):  # requested: the driver, back first, must not ask again
            return act("wait", "the cluster restart is under way: waiting for every node to come back")
        if pos != 1:
            return act("wait", f"{order[0]} drives the cluster restart")
        problem = gate_problem(inp)
        return act("wait", problem) if problem else act("cluster-restart", "every node has the new file")
    if pos == 1 and not inp.reload_issued:
        problem = gate_problem(inp)
        return act("wait", problem) if problem else act("reload", "every node has the new file")
    if me.applied == d:
        return act("wait", "this node runs it; waiting for the others to verify")
    return act("verify", "checking the runtime values through cmap")


def _plan_rollback(inp: RolloutInput, me: PeerState, order: list[str], pos: int, cls: ChangeClass | None,
                   act: Callable[..., Action]) -> Action:
    """The revision is marked bad: every node that wrote the new file puts its previous one back.

    reload: restore and `corosync-cfgtool -R` at once (each node reloads after its own restore, so the
    last -R finds every file restored). rolling-restart: restore and restart one node at a time in the
    rollout order, each after the ones before it (a node that is not in the cluster goes at once: it has
    nothing to lose). cluster-restart: every node restores and restarts at once, as it came.
    """
    d = inp.desired_digest
    has_local = inp.local_digest == d
    if not has_local:
        if me.has_file(d) or me.applied == d:  # restored, the CIB does not say so yet
            return act("report", "the previous corosync.conf is back")
        if cls in ("reload", None) and pos == 1 and not inp.rollback_reloaded \
                and not any(n.has_file(d) for n in inp.nodes):
            # Each node reloaded after its own restore, but -R calls that overlap a reload under way
            # can be lost: one more from the driver once every node reports its previous file.
            return act("reload", "every node restored its previous file: the final reload")
        return act("nothing", f"corosync.conf {d} of this revision is marked bad (not retried until a "
                   "newer commit)", in_progress=False)
    if not inp.previous_digest:
        return act("nothing", "no previous corosync.conf to restore on this node", in_progress=False)
    if cls == "reload" or cls is None:
        return act("restore", "rolling back: restore and reload")
    if cls == "rolling-restart" and me.online:
        by_name = {n.name: n for n in inp.nodes}
        # One at a time, in the rollout order; no quorum gate: a lost quorum may be what went wrong,
        # and each node reports only once it is back, so two never restart together.
        late = [n for n in order[:pos - 1] if by_name[n].has_file(d) and by_name[n].online]
        if late:
            return act("wait", f"rolling back: waiting for {', '.join(late)} to restore first")
    a = act("restore", "rolling back: restore and restart")
    a.restart = True
    return a


# ---------------------------------------------------------------------------------------------- cmap checks
class Expect(BaseModel):
    """What cmap must show: `value` (None: absent), or for the token `value` + k * `coefficient`, k >= 0."""

    value: str | None
    coefficient: int = 0

    def matches(self, have: str | None) -> bool:
        if self.coefficient and have is not None and self.value is not None and have.isdigit():
            extra = int(have) - int(self.value)
            return extra >= 0 and extra % self.coefficient == 0
        return have == self.value


def expected_runtime(changes: Sequence[CorosyncChange], totem: dict[str, str]) -> dict[str, Expect]:
    """cmap key -> what a node shows once a reload of the new file took.

    Totem keys are checked twice: the configured value (totem.KEY, re-read from the file) and what
    corosync runs (runtime.config.totem.KEY). The running token is the configured one plus
    token_coefficient (default 650 ms) times a node count; measured with 3 nodes after a reload,
    corosync 3.1.7 counts more than the 3 (token 1000 runs as 3600), so the token is checked as
    token + k * coefficient. Keys inside repeated sections (nodelist.node[...]) have no stable cmap
    name and are covered by the reload-in-progress check only.
    """
    out: dict[str, Expect] = {}
    for c in changes:
        if c.change_class != "reload" or "[" in c.path:
            continue
        out[c.path] = Expect(value=c.new)
        if c.path.startswith("totem.") and c.path.count(".") == 1:
            key = c.path.split(".", 1)[1]
            if key in ("token", "token_coefficient"):
                out["runtime.config.totem.token"] = Expect(value=totem.get("token", "1000"),
                                                           coefficient=int(totem.get("token_coefficient",
                                                                                     "650")) or 0)
            elif key != "config_version" and c.new is not None:
                out[f"runtime.config.totem.{key}"] = Expect(value=c.new)
    return out


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
        self.conf_path = conf_path
        self.wake = wake
        self.poll_interval = poll_interval
        # The cluster's limits (cluster.toml [settle] and [rollout]), taken from the desired state at each
        # step; until the first step, their defaults.
        self._limits(ClusterPolicy())
        self._verify_since: dict[str, float] = {}  # digest -> first runtime check after the reload
        self.now = now
        self._timer: threading.Timer | None = None
        self._fast_since: dict[str, float] = {}  # digest -> when fast verify polling began

    # ------------------------------------------------------------------ observe
    def observe(self, desired_text: str, status: Any, restart_refusal: str | None,
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
        return RolloutInput(
            node=self.node, desired_digest=desired_digest,
            local_digest=text_digest(local) if local is not None else None, local_class=local_class,
            nodes=peers(cib, status, votes), gate=gate, restart_refusal=restart_refusal,
            reload_issued=self.store.get_state("corosync-reload-issued", scope=self.node) == desired_digest,
            restarted=self.store.get_state("corosync-restarted", scope=self.node) == desired_digest,
            rollback_reloaded=self.store.get_state("corosync-reload-issued", scope=self.node)
            == f"{desired_digest}:rollback",
            bad=bool(revision) and read_marker(cib).corosync_bad == revision,
            previous_digest=text_digest(previous) if previous is not None else None,
            health_checked=self.store.get_state("corosync-health", scope=self.node) == desired_digest)

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

    def step(self, *, state: Any, desired: Any, revision: str, status: Any, leader: bool,
             trigger: str) -> dict[str, Any]:
        started = time.monotonic()
        text = state.corosync_text
        self._limits(state.policy)
        refusal = check_corosync_restart("cluster-restart", state.policy, self.now())
        inp = self.observe(text, status, str(refusal) if refusal else None, revision)
        action = plan_next(inp)
        res = StepResult(action=action.kind, reason=action.reason, change_class=action.change_class,
                         digest=inp.desired_digest, position=action.position, order=action.order, bad=inp.bad)
        saved = self.store.get_state("corosync-before", scope=self.node) or {}
        if action.position == 1 and saved.get("digest") != inp.desired_digest \
                and action.kind in ("write-file", "restart-self", "reload", "cluster-restart"):
            # The driver keeps the cluster's state from before its first step: the health check after
            # the rollout blames only what is new.
            self.store.set_state("corosync-before", {"digest": inp.desired_digest,
                                                     "status": status.model_dump(mode="json")},
                                 scope=self.node)
        base = {"node": self.node, "class": action.change_class, "digest": inp.desired_digest,
                "position": action.position, "order": action.order, "revision": revision,
                "trigger": trigger}
        try:
            if action.kind == "wait" and action.in_progress:
                self._paused(inp, action, base, res)
            elif action.kind == "refuse":
                if self._once("corosync-refused", inp.desired_digest):
                    res.events.append(self._event("refused", "refused", f"corosync.conf {inp.desired_digest} "
                                                  f"refused: {action.reason}", base, error=action.reason))
            elif action.kind == "report":
                self._report(inp, action)
            elif action.kind == "write-file":
                self._write(text, inp, action, base, res)
            elif action.kind == "reload" and inp.bad:
                d = inp.desired_digest
                r = self.cluster.runner.run(["corosync-cfgtool", "-R"], timeout=30)
                self._reassert_expected_votes()
                self.store.set_state("corosync-reload-issued", f"{d}:rollback", scope=self.node)
                res.events.append(self._event("rollout-step", "success", f"rollback of corosync.conf {d}: "
                                              f"final corosync-cfgtool -R by {self.node}",
                                              {**base, "step": "rollback-reload",
                                               "output": (r.stdout + r.stderr)[-500:]}))
            elif action.kind == "reload":
                self._reload(inp, base, res)
                time.sleep(0.2)  # cmap is updated asynchronously after -R
                self._verify(text, inp, base, res, revision)
            elif action.kind == "verify":
                self._verify(text, inp, base, res, revision)
            elif action.kind == "restart-self":
                try:
                    self._restart_self(text, inp, action, base, res)
                except HaGitopsError as exc:
                    if text_digest(self._read_local() or "") != inp.desired_digest:
                        raise  # nothing was written: nothing to roll back
                    self._fail(inp, action, base, res, revision, f"restart with the new file failed: {exc}")
            elif action.kind == "check-health":
                self._check_health(state, inp, action, base, res, revision)
            elif action.kind == "restore":
                self._restore(inp, action, base, res)
            elif action.kind == "cluster-restart":
                for n in inp.nodes:
                    self._set_attr(n.name, ATTR_RESTART, inp.desired_digest)
                res.events.append(self._event("rollout-step", "success", "cluster restart requested on "
                                              "every node", {**base, "step": "cluster-restart"}))
        except HaGitopsError as exc:
            res.ok, res.error = False, str(exc)
            res.events.append(self._event("error", "failure", f"corosync.conf rollout stopped on {self.node} "
                                          f"({action.kind}): {exc}"[:300], {**base, "step": action.kind},
                                          error=str(exc)))
        if action.in_progress and action.kind != "refuse":
            # cmap catches up with a reload in well under a second and no CIB write tells the others
            fast = action.kind in ("reload", "verify") and \
                time.monotonic() - self._fast_since.setdefault(inp.desired_digest, time.monotonic()) < 15
            self._poll_later(0.3 if fast else 2 * self.poll_interval)  # a verify that never takes backs off
        if action.in_progress or action.kind not in ("nothing", "wait"):
            log.info("corosync.conf %s: %s (%s)%s", inp.desired_digest, action.kind, res.reason,
                     f" failed: {res.error}" if res.error else "")
        res.duration = round(time.monotonic() - started, 3)
        return res.model_dump()

    # ------------------------------------------------------------------ actions
    def _write(self, text: str, inp: RolloutInput, action: Action, base: dict[str, Any],
               res: StepResult) -> None:
        problem = self.validate(text)
        if problem is not None:
            res.ok, res.error = False, problem
            if self._once("corosync-invalid", inp.desired_digest):
                res.events.append(self._event("refused", "refused", f"corosync.conf {inp.desired_digest} "
                                              f"fails `corosync -t` on {self.node}; no file written",
                                              {**base, "step": "validate"}, error=problem))
            return
        self.install(text)
        self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:{action.change_class}")
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} "
                                      f"written on {self.node} ({action.position}/{len(action.order)})",
                                      {**base, "step": "write-file"}))

    def _report(self, inp: RolloutInput, action: Action) -> None:
        if inp.bad and inp.local_digest:  # rolled back: this node runs its previous file again
            self._set_attr(self.node, ATTR_FILE, f"{inp.local_digest}:")
            self._set_attr(self.node, ATTR_APPLIED, inp.local_digest)
            return
        if inp.restarted and inp.local_digest == inp.desired_digest:
            self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:{action.change_class}")
            self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
            return
        if action.change_class is None:  # nothing to apply: the node already runs this file
            self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:")
            self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
            return
        self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:{action.change_class}")

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
            self.cluster.runner.run(["corosync-quorumtool", "-e", expected], timeout=30, check=False)

    def _reload(self, inp: RolloutInput, base: dict[str, Any], res: StepResult) -> None:
        # -R exits 0 even when a node cannot parse its file or a key cannot change at run time: the
        # exit code proves nothing, every node's cmap does (each verifies its own, `verify`).
        r = self.cluster.runner.run(["corosync-cfgtool", "-R"], timeout=30)
        self.store.set_state("corosync-reload-issued", inp.desired_digest, scope=self.node)
        res.events.append(self._event("rollout-step", "success", f"corosync-cfgtool -R issued by {self.node}",
                                      {**base, "step": "reload", "output": (r.stdout + r.stderr)[-500:]}))

    def _verify(self, text: str, inp: RolloutInput, base: dict[str, Any], res: StepResult,
                revision: str) -> None:
        problems = self.runtime_problems(text)
        if problems:
            res.reason = "runtime not there yet: " + "; ".join(problems)
            since = self._verify_since.setdefault(inp.desired_digest, time.monotonic())
            if time.monotonic() - since > self.verify_timeout:
                self._fail(inp, None, base, res, revision, f"runtime still differs {self.verify_timeout:g}s "
                           "after the reload: " + "; ".join(problems), problems=problems)
            return
        self._set_attr(self.node, ATTR_APPLIED, inp.desired_digest)
        res.events.append(self._event("rollout-step", "success", f"runtime of corosync.conf "
                                      f"{inp.desired_digest} verified on {self.node}",
                                      {**base, "step": "verified"}))

    def _restart_self(self, text: str, inp: RolloutInput, action: Action, base: dict[str, Any],
                      res: StepResult) -> None:
        me = next(n for n in inp.nodes if n.name == self.node)
        cluster_restart = me.restart == inp.desired_digest
        if inp.local_digest != inp.desired_digest:
            problem = self.validate(text)
            if problem is not None:
                res.ok, res.error = False, problem
                if self._once("corosync-invalid", inp.desired_digest):
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
                self._set_attr(self.node, ATTR_FILE, f"{inp.desired_digest}:{action.change_class}")
                res.events.append(self._event("rollout-step", "success", f"corosync.conf "
                                              f"{inp.desired_digest} written on {self.node}",
                                              {**base, "step": "write-file"}))
            t1 = time.monotonic()
            # systemctl restart corosync stops pacemaker (it requires corosync) but does not start it.
            run([*self.service_command, "restart", "corosync"], timeout=240)
            run([*self.service_command, "start", "pacemaker"], timeout=120)
            self.store.set_state("corosync-restarted", inp.desired_digest, scope=self.node)
            if cluster_restart:  # the others restart at the same time: wait for this node's stack only
                self._wait(lambda: self._rejoined(everyone=False), self.rejoin_timeout,
                           f"{self.node} to come back")
            else:
                self._wait(self._rejoined, self.rejoin_timeout, f"{self.node} to rejoin a quorate cluster")
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

    def _check_health(self, state: Any, inp: RolloutInput, action: Action, base: dict[str, Any],
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
            if saved.get("digest") == inp.desired_digest else after
        problems = [p.message for p in health_problems(before, after)]
        if not settled:
            problems.append(f"the cluster did not settle within {timeout:g}s")
        self.store.set_state("corosync-health", inp.desired_digest, scope=self.node)
        if problems:
            self._fail(inp, action, base, res, revision, "cluster unhealthy after the rollout: "
                       + "; ".join(problems), problems=problems)
            return
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} runs "
                                      "on every node; the cluster is healthy", {**base, "step": "healthy"}))

    def _fail(self, inp: RolloutInput, action: Action | None, base: dict[str, Any], res: StepResult,
              revision: str, why: str, problems: Sequence[str] = ()) -> None:
        """Verify failed: record it, mark the revision bad (the marker reaches every agent), roll back."""
        res.ok, res.error, res.bad = False, why, True
        verify = self._event("verify", "failure",
                             f"corosync.conf {inp.desired_digest} failed on {self.node}: {why}"[:300],
                             {**base, "step": "verify", "problems": list(problems)}, error=why)
        res.events.append(verify)
        restored_here = False
        try:
            self._mark_bad(revision)
        except HaGitopsError:
            # This node is out of the cluster (it did not rejoin): put its own file back first.
            self._restore(inp, Action(kind="restore", restart=True), base, res)
            restored_here = True
            self._mark_bad(revision)
        res.events.append(self._event(
            "auto-rollback", "success", f"auto-rollback of corosync.conf {inp.desired_digest} "
            f"({revision[:12]}): every node that wrote it restores its previous file; revision marked bad",
            {**base, "step": "auto-rollback", "bad_revision": revision, "verify_event": verify,
             "restored_here": restored_here}, error=why))

    def _mark_bad(self, revision: str) -> None:
        write_marker_only(self.cluster, lambda m: m.model_copy(update={"corosync_bad": revision}))

    def _restore(self, inp: RolloutInput, action: Action, base: dict[str, Any], res: StepResult) -> None:
        """Put corosync.conf.ha-gitops-prev back, then reload or restart onto it, then report."""
        previous = self._backup_path().read_text(encoding="utf-8", errors="surrogateescape")
        t0 = time.monotonic()
        if self._read_local() != previous:
            self.install(previous, keep_backup=False)
        if action.restart:
            run([*self.service_command, "restart", "corosync"], timeout=240)
            run([*self.service_command, "start", "pacemaker"], timeout=120)
            self._wait(lambda: self._rejoined(everyone=False), self.rejoin_timeout,
                       f"{self.node} to come back with its previous corosync.conf")
        else:
            self.cluster.runner.run(["corosync-cfgtool", "-R"], timeout=30)
        prev = text_digest(previous)
        self._set_attr(self.node, ATTR_FILE, f"{prev}:")
        self._set_attr(self.node, ATTR_APPLIED, prev)
        res.events.append(self._event("rollout-step", "success", f"corosync.conf {inp.desired_digest} rolled "
                                      f"back on {self.node}: previous file {prev} restored and "
                                      + ("restarted" if action.restart else "reloaded"),
                                      {**base, "step": "restored", "previous": prev,
                                       "seconds": round(time.monotonic() - t0, 2)}))

    def _paused(self, inp: RolloutInput, action: Action, base: dict[str, Any], res: StepResult) -> None:
        """A gate that stops a rollout under way is recorded once, with where it stopped."""
        gate = gate_problem(inp)
        key = f"{inp.desired_digest}:{'paused' if gate else 'running'}"
        if gate and self._once("corosync-gate", key):
            done = [n.name for n in inp.nodes if n.has_file(inp.desired_digest)]
            res.events.append(self._event("rollout-step", "skipped", f"corosync.conf rollout paused on "
                                          f"{self.node}: {gate}", {**base, "step": "paused", "reason": gate,
                                                                  "done": done}))
        elif not gate and self.store.get_state("corosync-gate", scope=self.node) == \
                f"{inp.desired_digest}:paused":
            self._once("corosync-gate", key)
            res.events.append(self._event("rollout-step", "success", f"corosync.conf rollout resumes on "
                                          f"{self.node}", {**base, "step": "resumed"}))

    # ------------------------------------------------------------------ effects
    def validate(self, text: str) -> str | None:
        """`corosync -t` on a candidate next to the live file (same directory: uidgid.d is found)."""
        cand = self.conf_path.with_name("." + self.conf_path.name + ".ha-gitops-candidate")
        cand.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            r = self.cluster.runner.run(["corosync", "-c", str(cand), "-t"], timeout=30, check=False)
        finally:
            cand.unlink(missing_ok=True)
        if r.returncode == 0:
            return None
        out = (r.stderr + r.stdout).strip()
        return f"corosync -t exited {r.returncode}" + (f": {out[-500:]}" if out else "")

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

    def _set_attr(self, node: str, name: str, value: str) -> None:
        self.cluster.runner.run(["crm_attribute", "-t", "nodes", "-N", node, "-n", name, "-v", value],
                                timeout=30)

    def _standby(self, on: bool) -> None:
        # Reboot lifetime (status section): the desired CIB owns the permanent standby attribute (the
        # DC's agent would undo a permanent one as drift), and a transient one cannot outlive a restart.
        argv = ["crm_attribute", "-N", self.node, "-n", "standby", "-l", "reboot"]
        self.cluster.runner.run(argv + (["-v", "on"] if on else ["-D"]), timeout=30)

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
        raise RolloutFailed(f"timed out after {timeout:g}s waiting for {what}")

    def _poll_later(self, delay: float) -> None:
        # Peers report through the CIB (the agent's CIB watch wakes it), this is the fallback and the
        # clock for waits that no CIB write ends (a node coming back, cmap catching up).
        if self.wake is None or (self._timer is not None and self._timer.is_alive()):
            return
        self._timer = threading.Timer(delay, self.wake, args=("corosync",))
        self._timer.daemon = True
        self._timer.start()

    def _once(self, key: str, value: str) -> bool:
        if self.store.get_state(key, scope=self.node) == value:
            return False
        self.store.set_state(key, value, scope=self.node)
        return True

    def _event(self, kind: str, outcome: str, summary: str, details: dict[str, Any],
               error: str | None = None) -> int:
        return self.store.append(NewEvent(node=self.node, kind=kind, outcome=outcome, summary=summary,
                                          error=error, details=details)).id


def peers(cib: etree._Element, status: Any, votes: dict[str, int]) -> list[PeerState]:
    """Every node of the CIB with its configured standby, its rollout attributes and crm_mon's view."""
    out: list[PeerState] = []
    for node in cib.iterfind("configuration/nodes/node"):
        name = node.get("uname") or ""
        attrs = {nv.get("name"): nv.get("value") for nv in node.iterfind("instance_attributes/nvpair")}
        live = status.node(name) if status is not None else None
        out.append(PeerState(
            name=name, online=bool(live and live.online), standby=attrs.get("standby") in ("on", "true", "1"),
            file=attrs.get(ATTR_FILE), applied=attrs.get(ATTR_APPLIED), restart=attrs.get(ATTR_RESTART),
            votes=votes.get(name, 1)))
    return out
