"""Judging a change after it was written (pure): did *this change* break something?

The shell watches the cluster for the verify window (status samples until it settles, the fencing seen
meanwhile) and hands the evidence here. Each health problem is attributed:

    predicted  crm_simulate said the change would do it (a stop, a fencing the policy allowed): not a problem
    fault      a concurrent fault explains it: a node left, was fenced or is being fenced during the
               window, quorum went with it, or the cluster was recovering from that when judged
    unrelated  the cluster was whole and the problem is on a resource the change neither touched nor was
               predicted to act on (a coincidental crash): reported, not blamed
    change     everything else: the change is blamed

The verdict: `failed` when any problem is the change's (the executor rolls back), else `inconclusive`
when a fault explains a problem (the revision is kept and re-checked once the cluster is whole), else
`healthy`. A re-check judges again with `whole=True`: by then Pacemaker has recovered from the fault, so
a resource of the change that is still not running is the change's, and what the fault explained (a
failed action on the node that left, the fencing) is history, not a reason to wait again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from controller.cib.render import ObjectChange
from controller.cluster.fencing import FenceEvent
from controller.health import HealthProblem, health_problems
from controller.impact import Impact, resource_containers
from controller.observed import ClusterStatus

Attribution = Literal["change", "predicted", "fault", "unrelated"]
VerifyOutcome = Literal["healthy", "failed", "inconclusive"]

# Object kinds whose change reaches every resource (cluster options, defaults, node attributes); an
# unknown kind is treated the same way, so a problem is blamed rather than excused.
_LOCAL_KINDS = frozenset({"resource", "constraint", "tag"})
_CONSTRAINT_REFS = ("rsc", "with-rsc", "first", "then")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ChangeScope(_Frozen):
    """The resources a change can be blamed for."""

    resources: frozenset[str] = frozenset()
    everything: bool = False

    def covers(self, resource: str) -> bool:
        return self.everything or resource.split(":", 1)[0] in self.resources


class VerifyEvidence(_Frozen):
    before: ClusterStatus  # just before the write
    samples: list[ClusterStatus] = []  # seen during the window, oldest first (the last one is `after`)
    after: ClusterStatus
    settled: bool = True
    fences: list[FenceEvent] | None = []  # fencing since the write; None: the history could not be read
    scope: ChangeScope = ChangeScope(everything=True)
    impact: Impact | None = None
    whole: bool = False  # a re-check: the cluster had time to recover from the faults of the window


class JudgedProblem(HealthProblem):
    attribution: Attribution
    why: str = ""


class VerifyVerdict(_Frozen):
    outcome: VerifyOutcome
    problems: list[JudgedProblem] = []
    faults: list[str] = Field(default_factory=list)  # what happened meanwhile, in words
    left: list[str] = []  # nodes that left, were fenced or are being fenced during the window

    @property
    def blamed(self) -> list[JudgedProblem]:
        return [p for p in self.problems if p.attribution == "change"]

    @property
    def explained(self) -> list[JudgedProblem]:
        return [p for p in self.problems if p.attribution == "fault"]

    @property
    def unrelated(self) -> list[JudgedProblem]:
        return [p for p in self.problems if p.attribution == "unrelated"]

    def summary(self) -> str:
        shown = self.blamed or self.explained or self.unrelated
        text = "; ".join(p.message for p in shown)
        if self.outcome == "inconclusive" and self.faults:
            text += " (during " + ", ".join(self.faults) + ")"
        return text


# ---------------------------------------------------------------------------------------- the scope
def change_scope(changes: Sequence[ObjectChange], wanted: etree._Element | None,
                 live: etree._Element | None, impact: Impact | None) -> ChangeScope:
    """What the change touched: changed resources (with what contains them and what they contain),
    the resources a changed constraint or tag names (in the wanted or, if removed, the live CIB), and
    every resource crm_simulate predicted an action for."""
    if any(c.kind not in _LOCAL_KINDS for c in changes):
        return ChangeScope(everything=True)
    ids: set[str] = set()
    for doc in (wanted, live):
        config = _configuration(doc)
        for c in changes:
            if c.kind == "resource":
                ids.add(c.id)
            elif config is not None:
                ids |= _referenced(config, c.id)
    if impact is not None:
        for r in impact.resources:
            ids |= {r.base_id, *r.containers}
    return ChangeScope(resources=frozenset(_closure(ids, wanted, live)))


def _configuration(doc: etree._Element | None) -> etree._Element | None:
    if doc is None:
        return None
    return doc if doc.tag == "configuration" else doc.find("configuration")


def _referenced(config: etree._Element, object_id: str) -> set[str]:
    out: set[str] = set()
    for el in config.iter():
        if not isinstance(el.tag, str) or el.get("id") != object_id:
            continue
        out |= {v for k in _CONSTRAINT_REFS if (v := el.get(k))}
        out |= {ref.get("id") or "" for ref in el.iter("resource_ref", "obj_ref")} - {""}
    return out


def _closure(ids: set[str], *docs: etree._Element | None) -> set[str]:
    """Add the groups/clones containing each resource and the members of each container."""
    out = set(ids)
    for doc in docs:
        known = resource_containers(_configuration(doc))
        for rid, chain in known.items():
            if rid in ids:
                out.update(chain)
            if any(c in ids for c in chain):
                out.add(rid)
    return out


# ---------------------------------------------------------------------------------------- faults seen
def _fencing_predicted(impact: Impact | None) -> set[str]:
    if impact is None:
        return set()
    return {n.node for n in impact.node_actions if n.task.lower().startswith(("fence", "stonith"))}


def _acted_on(impact: Impact | None) -> set[str]:
    """Nodes the change was predicted to act on: a failed action there (a start or stop with
    on-fail=fence) escalates to fencing, and that fencing is the change's."""
    if impact is None:
        return set()
    return {n for r in impact.resources for n in r.nodes}


def window_faults(ev: VerifyEvidence) -> tuple[list[str], list[str]]:
    """(nodes that left, were fenced or are being fenced; the faults in words) during the window."""
    online_before = {n.name for n in ev.before.nodes if n.online and not n.unclean}
    left: dict[str, str] = {}
    for st in [*ev.samples, ev.after]:
        for n in st.nodes:
            if n.name not in online_before or n.name in left:
                continue
            if n.unclean:
                left[n.name] = f"{n.name} unclean"
            elif n.pending:
                left[n.name] = f"{n.name} pending"
            elif not n.online:
                left[n.name] = f"{n.name} left"
        gone = online_before - {n.name for n in st.nodes}
        left.update({name: f"{name} left" for name in gone if name not in left})
    predicted = _fencing_predicted(ev.impact)
    for f in ev.fences or []:
        if f.target and f.target not in predicted and f.target not in left:
            left[f.target] = f"fencing of {f.target}" + (f" ({f.status})" if f.status else "")
    words = list(left.values())
    if ev.before.quorate and any(not s.quorate for s in [*ev.samples, ev.after]) and left:
        words.append("quorum lost")
    dcs = {s.dc for s in [ev.before, *ev.samples, ev.after] if s.dc}
    if len(dcs) > 1:
        words.append("DC changed")
    return sorted(left), words


# ---------------------------------------------------------------------------------------- the judge
_UNTOUCHED = "not touched by the change and no action predicted for it"


def _predicted_stop(impact: Impact | None, resource: str) -> bool:
    return impact is not None and any(r.action == "stop" and r.covers([resource]) for r in impact.resources)


def _was_on(before: ClusterStatus, resource: str, nodes: Iterable[str]) -> bool:
    where = set(nodes)
    return any((r.id == resource or r.parent == resource) and set(r.nodes) & where for r in before.resources)


def judge(ev: VerifyEvidence) -> VerifyVerdict:
    """Attribute each health problem after a change (see the module text) and give the verdict."""
    left, faults = window_faults(ev)
    anyway = ev.impact.baseline if ev.impact is not None else []
    if anyway:
        # crm_simulate's baseline: what the cluster was about to do without the change (a recovery still
        # under way). A write made then is judged once the cluster is whole, not blamed for it.
        faults = [*faults, f"{len(anyway)} action(s) the cluster was taking anyway"]
    left_set = set(left)
    fenced_ok = _fencing_predicted(ev.impact)
    acted_on = _acted_on(ev.impact)
    recovering = bool(faults) and not ev.whole  # Pacemaker is still reacting to the fault

    def attribute(p: HealthProblem) -> tuple[Attribution, str]:
        if p.kind == "quorum":
            return ("fault", "nodes left meanwhile") if left else ("change", "")
        if p.kind in ("unclean", "fenced"):
            if p.subject in fenced_ok:
                return "predicted", "crm_simulate predicted this fencing"
            if p.subject in acted_on:
                return "change", f"the change acted on resources on {p.subject}"
            return "fault", f"{p.subject} failed meanwhile"
        if p.kind == "settle":
            return ("fault", "the cluster was recovering") if recovering else ("change", "")
        if p.kind == "failed-action":
            rsc = p.resource or p.subject
            if p.node in left_set:
                return "fault", f"on {p.node}, which left during the window"
            return ("change", "") if ev.scope.covers(rsc) else ("unrelated", _UNTOUCHED)
        if p.kind == "resource":
            if _predicted_stop(ev.impact, p.subject):
                return "predicted", "crm_simulate predicted this stop"
            if not ev.whole and _was_on(ev.before, p.subject, left_set):
                return "fault", "it ran on a node that left during the window"
            if recovering:
                return "fault", "the cluster was recovering from " + ", ".join(faults)
            return ("change", "") if ev.scope.covers(p.subject) else ("unrelated", _UNTOUCHED)
        return "change", ""

    problems = health_problems(ev.before, ev.after)
    if not ev.settled:
        problems.append(HealthProblem(kind="settle", subject="cluster",
                                      message="the cluster did not settle within the settle timeout"))
    for f in ev.fences or []:
        problems.append(HealthProblem(kind="fenced", subject=f.target, message=f.text(), node=f.target))
    judged = [JudgedProblem(**p.model_dump(), attribution=a, why=why) for p in problems
              for a, why in [attribute(p)]]
    kept = [p for p in judged if p.attribution != "predicted"]
    # Once whole, what a fault explained is history: the cluster recovered from it.
    explained = not ev.whole and any(p.attribution == "fault" for p in kept)
    outcome: VerifyOutcome = ("failed" if any(p.attribution == "change" for p in kept)
                              else "inconclusive" if explained else "healthy")
    return VerifyVerdict(outcome=outcome, problems=judged, faults=faults, left=left)


def cluster_whole(before: ClusterStatus, now: ClusterStatus) -> str | None:
    """None when a re-check may run: quorate, no node unclean or pending, every node that was online
    before the change online again; else what it waits for."""
    if not now.quorate:
        return "quorum"
    online = {n.name for n in now.nodes if n.online and not n.unclean and not n.pending}
    bad = sorted(n.name for n in now.nodes if n.unclean or n.pending)
    if bad:
        return "node(s) " + ", ".join(bad) + " to recover"
    missing = sorted({n.name for n in before.nodes if n.online} - online)
    if missing:
        return "node(s) " + ", ".join(missing) + " to rejoin"
    if any(r.role.endswith("ing") for r in now.resources):
        return "the cluster to settle"
    return None
