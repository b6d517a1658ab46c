"""The corosync.conf rollout decision (pure): which step this node takes next, in which order.

Every agent acts on its own node only; the agents talk through node attributes in the CIB (see
controller/rollout.py, the executor). `plan_next` is the whole decision, unit-tested without a cluster;
`rollout_order` is the one definition of the node order that `plan` prints and the rollout follows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from lxml import etree
from pydantic import BaseModel, Field

from controller.cib.booleans import crm_is_true
from controller.corosync.diff import ChangeClass, CorosyncChange


class ClusterStatusLike(Protocol):
    def node(self, name: str) -> NodeLike | None: ...


class NodeLike(Protocol):
    online: bool

ATTR_FILE = "ha-gitops-corosync"
ATTR_APPLIED = "ha-gitops-corosync-applied"
ATTR_RESTART = "ha-gitops-corosync-restart"
ATTR_DRIVEN = "ha-gitops-corosync-driven"  # "ROLLOUT:STEP": a driver's step this node took (reload, ...)
_CLASS_ORDER: list[ChangeClass] = ["reload", "rolling-restart", "cluster-restart"]

def text_digest(text: str) -> str:
    """The identity of a corosync.conf text (node attributes and plans carry it)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]


ActionKind = Literal["nothing", "wait", "refuse", "write-file", "reload", "verify", "restart-self",
                     "cluster-restart", "report", "check-health", "restore", "abandon"]


# ---------------------------------------------------------------------------------------------- the planner
class PeerState(BaseModel):
    """One cluster node as the CIB and crm_mon show it."""

    name: str
    online: bool = True
    standby: bool = False  # configured standby (the desired CIB), not a transient one set by a rollout
    file: str | None = None  # ATTR_FILE value "DIGEST:CLASS:START" (START: the rollout's first revision)
    applied: str | None = None
    restart: str | None = None
    driven: str | None = None  # ATTR_DRIVEN value "ROLLOUT:STEP"
    votes: int = 1

    def has_file(self, digest: str) -> bool:
        return (self.file or "").split(":")[0] == digest

    def file_class(self, digest: str) -> ChangeClass | None:
        parts = (self.file or "").split(":")
        cls = parts[1] if len(parts) > 1 else ""
        return cls if parts[0] == digest and cls in _CLASS_ORDER else None

    def file_start(self, digest: str) -> str:
        """The START of the rollout this node wrote `digest` in ("" for none or an older attribute)."""
        parts = (self.file or "").split(":")
        return parts[2] if parts[0] == digest and len(parts) > 2 else ""

    def drove(self, rollout: str, *steps: str) -> bool:
        """This node took one of these driver steps in that rollout."""
        return any(self.driven == f"{rollout}:{s}" for s in steps)


def rollout_id(nodes: Sequence[PeerState], digest: str, revision: str) -> str:
    """The identity of the rollout of `digest` under way (or about to start): every timer, attempt and
    memory of it is keyed by this, so a revert to a text rolled out before is a new rollout.

    The first node to write the file names the rollout after the revision it saw (START, in its ATTR_FILE
    value); every other node takes that START from the earliest node in the order that carries one, so
    a CIB-only commit in the middle does not split the rollout. Before anyone wrote: this revision.
    """
    by_name = {n.name: n for n in nodes}
    start = next((s for s in (by_name[n].file_start(digest) for n in rollout_order(nodes)) if s), "")
    return f"{digest}.{start or revision[:12] or '-'}"


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
    revision: str = ""  # the revision this pass follows (names a new rollout, and a rollback)
    restarted: bool = False  # this node's corosync was restarted in this rollout (local record: survives
                             # a CIB merge that drops the applied attribute written in a lone partition)
    bad: bool = False  # the marker: this revision's rollout failed its verify and is rolled back
    previous_digest: str | None = None  # digest of corosync.conf.ha-gitops-prev (what a rollback restores)
    # Seconds since this node last saw any rollout attribute of any node change (or a node come or go):
    # how long the step everyone waits for has not been taken.
    stalled_for: float = 0.0
    takeover_after: float = 30.0  # [rollout] takeover_timeout

    @property
    def rollout(self) -> str:
        return rollout_id(self.nodes, self.desired_digest, self.revision)

    @property
    def rollback_key(self) -> str:
        """The rollback of a bad revision: the bad mark names the revision, the same on every node."""
        return f"{self.desired_digest}.{self.revision[:12] or '-'}"


class Action(BaseModel):
    kind: ActionKind
    reason: str = ""
    change_class: ChangeClass | None = None
    position: int = 0  # 1-based place of this node in the rollout order
    order: list[str] = Field(default_factory=list)
    in_progress: bool = False  # some node has the new digest and some has not: worth waking up for
    restart: bool = False  # restore: restart corosync onto the restored file (else reload it)
    rollout: str = ""  # rollout_id: what every local timer and memory of this rollout is keyed by
    takeover_from: str | None = None  # this node takes a driver's step that node did not take


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


def _strongest(classes: list[ChangeClass]) -> ChangeClass | None:
    """The most disruptive of the change classes, None for none."""
    return max(classes, key=_CLASS_ORDER.index, default=None)


def _standin(inp: RolloutInput, order: list[str], stalled: Sequence[str]) -> bool:
    """It is this node's turn to act for `stalled`: the nodes after them in the order (then the ones
    before, wrapping round) take turns, the k-th once nothing moved for k x takeover_after."""
    if inp.node in stalled or not stalled:
        return False
    i = order.index(stalled[0])
    others = [n for n in order[i + 1:] + order[:i] if n not in stalled]
    k = others.index(inp.node) + 1
    return inp.stalled_for >= k * inp.takeover_after


def plan_next(inp: RolloutInput) -> Action:
    """The next action of this node in the rollout of `inp.desired_digest` (pure)."""
    d = inp.desired_digest
    rid = inp.rollout
    order = rollout_order(inp.nodes)
    by_name = {n.name: n for n in inp.nodes}
    me = by_name.get(inp.node)
    if me is None:
        return Action(kind="wait", reason=f"{inp.node} is not a cluster node (yet)", order=order, rollout=rid)
    pos = order.index(inp.node) + 1
    has_local = inp.local_digest == d
    classes: list[ChangeClass] = [c for c in [None if has_local else inp.local_class,
                                              *(n.file_class(d) for n in inp.nodes)] if c is not None]
    cls = _strongest(classes)
    stalled = f"{inp.stalled_for:.0f}s"

    def act(kind: ActionKind, reason: str = "", in_progress: bool = True,
            takeover_from: str | None = None) -> Action:
        return Action(kind=kind, reason=reason, change_class=cls, position=pos, order=order,
                      in_progress=in_progress, rollout=rid, takeover_from=takeover_from)

    if inp.bad:
        a = _plan_rollback(inp, me, order, pos, cls, act)
        a.rollout = inp.rollback_key
        return a
    if has_local and all(n.applied == d and n.has_file(d) for n in inp.nodes):
        if cls is None or any(n.drove(rid, "healthy") for n in inp.nodes):
            return act("nothing", "every node runs the desired corosync.conf", in_progress=False)
        if pos == 1:
            return act("check-health", "every node runs it: is the cluster healthy?")
        if _standin(inp, order, [order[0]]):
            return act("check-health", f"taking over from {order[0]}: no health check {stalled} after every "
                       "node ran the new file", takeover_from=order[0])
        return act("wait", f"waiting for {order[0]} to check the cluster's health")
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
    problem = gate_problem(inp)
    blocking = next((n for n in order if n != inp.node and not by_name[n].has_file(d)), None)
    if not has_local and (blocking is None or order.index(blocking) > pos - 1):
        return act("wait", problem) if problem else act("write-file", f"position {pos} of {len(order)}")
    if blocking is not None:
        if not problem and _standin(inp, order, [blocking]):
            # Only that node's agent can write its file: nobody can take its turn. Put back what the
            # others wrote rather than leave files that differ from what runs.
            return act("abandon", f"{blocking} did not write the new file: its agent took no step for "
                       f"{stalled} while the cluster was whole; no reload was issued, and the nodes that "
                       "wrote it restore their previous file")
        return act("wait", problem or f"waiting for {blocking} to write the new file")
    if cls == "cluster-restart":
        if any(n.restart == d for n in inp.nodes):  # requested: the driver, back first, must not ask again
            return act("wait", "the cluster restart is under way: waiting for every node to come back")
        if problem:
            return act("wait", problem)
        if pos == 1:
            return act("cluster-restart", "every node has the new file")
        if _standin(inp, order, [order[0]]):
            return act("cluster-restart", f"taking over from {order[0]}: no cluster restart requested "
                       f"{stalled} after every node had the new file", takeover_from=order[0])
        return act("wait", f"{order[0]} drives the cluster restart")
    if not any(n.drove(rid, "reload", "healthy") for n in inp.nodes):
        if problem:
            return act("wait", problem)
        if pos == 1:
            return act("reload", "every node has the new file")
        if _standin(inp, order, [order[0]]):
            return act("reload", f"taking over from {order[0]}: no corosync-cfgtool -R {stalled} after "
                       "every node had the new file", takeover_from=order[0])
        return act("wait", f"waiting for {order[0]} to issue corosync-cfgtool -R")
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
        if cls in ("reload", None) and not any(n.drove(inp.rollback_key, "rollback-reload")
                                               for n in inp.nodes) \
                and not any(n.has_file(d) for n in inp.nodes):
            # Each node reloaded after its own restore, but -R calls that overlap a reload under way
            # can be lost: one more from the driver once every node reports its previous file.
            if pos == 1:
                return act("reload", "every node restored its previous file: the final reload")
            if _standin(inp, order, [order[0]]):
                return act("reload", f"taking over from {order[0]}: no final reload {inp.stalled_for:.0f}s "
                           "after every node restored its previous file", takeover_from=order[0])
            return act("wait", f"rolling back: waiting for {order[0]}'s final reload")
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


def configured_standby(node: etree._Element) -> bool:
    """The node's permanent standby attribute in the configuration, read as Pacemaker reads it."""
    return any(crm_is_true(nv.get("value"))
               for nv in node.iterfind("instance_attributes/nvpair[@name='standby']"))


def node_order(cib: etree._Element) -> list[str]:
    """The rollout order of the nodes a <cib> configures (what `plan` prints is what the rollout does)."""
    return rollout_order([PeerState(name=n.get("uname") or "", standby=configured_standby(n))
                          for n in cib.iterfind("configuration/nodes/node")])


def peers(cib: etree._Element, status: ClusterStatusLike | None, votes: dict[str, int]) -> list[PeerState]:
    """Every node of the CIB with its configured standby, its rollout attributes and crm_mon's view."""
    out: list[PeerState] = []
    for node in cib.iterfind("configuration/nodes/node"):
        name = node.get("uname") or ""
        attrs = {nv.get("name"): nv.get("value") for nv in node.iterfind("instance_attributes/nvpair")}
        live = status.node(name) if status is not None else None
        out.append(PeerState(
            name=name, online=bool(live and live.online), standby=configured_standby(node),
            file=attrs.get(ATTR_FILE), applied=attrs.get(ATTR_APPLIED), restart=attrs.get(ATTR_RESTART),
            driven=attrs.get(ATTR_DRIVEN), votes=votes.get(name, 1)))
    return out
