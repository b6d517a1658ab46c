"""The chaos soak's invariants, judged from collected evidence only (bench/chaos_soak.py collects it).

Pure: data in (what the soak did, what the cluster's own logs, CIB files and audit trails say), verdicts
out. Nothing here trusts the soak's belief about what happened to the cluster: the soak's own records
(pushes, hand edits, faults) say only what it *did*; whether the cluster behaved is read from the
evidence. Times are POSIX seconds (one host clock: every sandbox node shares it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

PushKind = Literal["valid", "invalid", "bad", "corosync"]


class Push(BaseModel):
    sha: str
    kind: PushKind  # valid CIB change; invalid (must be refused); bad (valid, unhealthy: may be rolled
    # back); corosync (a corosync.conf change or its revert)
    what: str
    pushed_at: float
    live_at: float | None = None  # first time a node's CIB on disk carried it in the marker


class HandEdit(BaseModel):
    node: str
    how: str  # the command line
    token: str  # the unique value it wrote: found in the drift event's diff
    started: float
    ended: float
    ok: bool  # the command succeeded (a failed command changed nothing and is not expected in a trail)


class Fault(BaseModel):
    kind: str  # agent-kill | pacemaker-kill | corosync-kill | cut | poweroff
    node: str
    started: float
    healed: float | None = None


class CibWrite(BaseModel):
    """A CIB patch a node's agent made, from that node's own pacemaker.log (`cib_apply_diff` by
    cibadmin with origin = the node: the agents' only way of writing; hand edits here use other clients)."""

    node: str
    time: float
    version: str
    line: str
    # When the node's CIB forwarded the request to the cluster (`Forwarding cib_apply_diff ... to all`):
    # a cut node's message layer can hold it until the membership changes, and then apply it alone.
    forwarded: float | None = None


class QuorumChange(BaseModel):
    """From a node's pacemaker.log: `Quorum lost` / `Quorum acquired`, and `Starting Pacemaker` (a node
    that starts has no quorum until it says so)."""

    node: str
    time: float
    quorate: bool
    line: str


class Event(BaseModel):
    """One audit event as `ha-gitops audit log --format json` gives it, with the trail it came from."""

    trail: str
    id: int
    time: float
    node: str
    kind: str
    outcome: str
    sha: str | None = None
    summary: str = ""
    error: str | None = None
    cib_version_after: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    diff: Any = None

    @property
    def key(self) -> str:
        """One write seen by several trails (its writer's and every observer's) is one marker event."""
        marker = self.details.get("marker_event")
        return str(marker) if marker else f"{self.trail}#{self.id}"

    @property
    def observed(self) -> bool:
        return "observed_by" in self.details


class MarkerSample(BaseModel):
    """The marker in a node's CIB on disk, each time it changed (read from the host every 50 ms)."""

    node: str
    time: float
    revision: str | None = None
    kind: str | None = None
    bad: str | None = None
    corosync_bad: str | None = None
    event: str | None = None


class AgentExit(BaseModel):
    """`main process exited, ...` in a node's agent.out (the sandbox's systemd lines)."""

    node: str
    time: float
    line: str


class NodeFinal(BaseModel):
    node: str
    marker_revision: str | None = None
    marker_bad: str | None = None
    plan_exit: int | None = None
    plan_out: str = ""
    corosync_matches: bool | None = None
    audit_verify_ok: bool | None = None
    audit_verify_out: str = ""
    audit_checked: int | None = None
    agent_running: bool | None = None
    agent_restarts: int | None = None


class Evidence(BaseModel):
    head: str
    git_order: list[str]  # oldest first
    pushes: list[Push]
    hand_edits: list[HandEdit]
    faults: list[Fault]
    writes: list[CibWrite]
    quorum: list[QuorumChange]
    events: list[Event]
    markers: list[MarkerSample]
    agent_exits: list[AgentExit]
    final: list[NodeFinal]
    converged: bool
    start: float = 0.0  # the chaos began
    healed: float = 0.0  # the final heal
    converged_at: float | None = None
    seed: int = 0
    minutes: float = 0.0


class Verdict(BaseModel):
    name: str
    ok: bool
    checked: int  # how many pieces of evidence were examined
    violations: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------------------- parsing

_PCMK_TIME = re.compile(r"^(?P<ts>[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2}\.\d{3}) (?P<host>\S+) ")
_WRITE = re.compile(r"Completed cib_apply_diff operation for section \S+: OK \(rc=0, "
                    r"origin=(?P<origin>[^/]+)/cibadmin/\d+, version=(?P<version>[\d.]+)\)")


def pcmk_time(stamp: str, year: int) -> float:
    """`Dec 02 00:54:12.383` (Pacemaker's log, UTC on this host) as POSIX seconds."""
    return datetime.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def parse_pacemaker_log(node: str, text: str, year: int) -> tuple[list[CibWrite], list[QuorumChange]]:
    writes: list[CibWrite] = []
    quorum: list[QuorumChange] = []
    forwards: list[float] = []  # requests forwarded since the last completed write
    for line in text.splitlines():
        m = _PCMK_TIME.match(line)
        if not m:
            continue
        if "pacemaker-based" in line:
            t = pcmk_time(m.group("ts"), year)
            if "Forwarding cib_apply_diff operation" in line and "origin=local/cibadmin/" in line:
                forwards.append(t)
                continue
            if "Starting Pacemaker" in line or "(main)" in line:
                forwards.clear()  # a restarted CIB forgets what it had queued
            w = _WRITE.search(line)
            if w and w.group("origin") == node:
                # The agent's patches are one at a time (a refused one completes with an error and is
                # not a write): the latest forward is this one's.
                recent = [f for f in forwards if t - f <= 120]
                writes.append(CibWrite(node=node, time=t, version=w.group("version"), line=line.strip(),
                                       forwarded=recent[-1] if recent else None))
                forwards.clear()
        elif "pacemaker-controld" in line and ("Quorum lost" in line or "Quorum acquired" in line) \
                and "abort_transition_graph" not in line:
            quorum.append(QuorumChange(node=node, time=pcmk_time(m.group("ts"), year),
                                       quorate="Quorum acquired" in line, line=line.strip()))
        elif "pacemakerd" in line and "Starting Pacemaker " in line and "(main)" in line:
            quorum.append(QuorumChange(node=node, time=pcmk_time(m.group("ts"), year), quorate=False,
                                       line=line.strip()))
    return writes, quorum


_UNIT_TIME = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) sandbox init: .*main process exited")


def parse_agent_log(node: str, text: str) -> list[AgentExit]:
    out = []
    for line in text.splitlines():
        m = _UNIT_TIME.match(line)
        if m:
            t = datetime.strptime(m.group("ts"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
            out.append(AgentExit(node=node, time=t, line=line.strip()))
    return out


def parse_events(trail: str, rows: Iterable[dict[str, Any]]) -> list[Event]:
    out = []
    for r in rows:
        commit = r.get("commit") or {}
        out.append(Event(trail=trail, id=int(r["id"]), time=datetime.fromisoformat(r["time"]).timestamp(),
                         node=r["node"], kind=r["kind"], outcome=r["outcome"], sha=commit.get("sha"),
                         summary=r.get("summary") or "", error=r.get("error"),
                         cib_version_after=r.get("cib_version_after"), details=r.get("details") or {},
                         diff=r.get("diff")))
    return out


# ----------------------------------------------------------------------------------------- helpers

def _when(t: float, start: float) -> str:
    return f"t+{t - start:.1f}s"


def near_fault(faults: Sequence[Fault], t: float, window: float = 30.0) -> str:
    """The fault active at t or healed/started within `window` s of it, for classifying a violation."""
    best: tuple[float, str] | None = None
    for f in faults:
        end = f.healed if f.healed is not None else t
        if f.started - window <= t <= end + window:
            dist = 0.0 if f.started <= t <= end else min(abs(t - f.started), abs(t - end))
            text = (f"during {f.kind} of {f.node}" if dist == 0 else
                    f"{dist:.1f}s {'before' if t < f.started else 'after the heal of'} {f.kind} of {f.node}")
            if best is None or dist < best[0]:
                best = (dist, text)
    return best[1] if best else "no fault within 30s"


def unique_writes(events: Sequence[Event], kinds: Iterable[str]) -> list[Event]:
    """One event per write (the earliest record of each marker event: the writer's own, or else the
    first observer's), oldest first."""
    wanted = set(kinds)
    first: dict[str, Event] = {}
    for e in events:
        if e.kind in wanted and e.outcome == "success" and (e.key not in first or e.time < first[e.key].time):
            first[e.key] = e
    return sorted(first.values(), key=lambda e: e.time)


def quorate_at(changes: Sequence[QuorumChange], node: str, t: float) -> tuple[bool, QuorumChange | None]:
    """The node's own view (its controller's log) at time t: the last change at or before t."""
    last: QuorumChange | None = None
    for c in changes:
        if c.node == node and c.time <= t and (last is None or c.time >= last.time):
            last = c
    return (last.quorate if last else False), last


# ----------------------------------------------------------------------------------------- invariants

def converged(ev: Evidence) -> Verdict:
    v = []
    for n in ev.final:
        if n.marker_revision != ev.head:
            v.append(f"{n.node}: marker revision {str(n.marker_revision)[:12]} != head {ev.head[:12]}")
        if n.marker_bad == ev.head:
            v.append(f"{n.node}: head {ev.head[:12]} marked bad")
        if n.plan_exit != 0:
            v.append(f"{n.node}: `ha-gitops plan` exit {n.plan_exit} (0 = no change): "
                     + n.plan_out.strip().replace("\n", " | ")[:300])
        if n.corosync_matches is False:
            v.append(f"{n.node}: /etc/corosync/corosync.conf differs from the head's")
    if not ev.converged:
        v.append("not converged within the bound after the final heal")
    return Verdict(name="converged to the head", ok=not v, checked=len(ev.final), violations=v)


def no_write_without_quorum(ev: Evidence, start: float) -> Verdict:
    v = []
    for w in ev.writes:
        ok, last = quorate_at(ev.quorum, w.node, w.time)
        if ok:
            continue
        what = "Starting Pacemaker" if last and "Starting" in last.line else "Quorum lost"
        since = f"{(w.time - last.time) * 1000:.0f} ms after `{what}`" if last else "before any quorum line"
        event = own_write_event(ev.events, w)
        if event is not None and event.outcome == "failure" and event.details.get("lost_race"):
            # A patch held across the membership change, recorded as the lost race it is (issue 10,
            # item 1): no check before a patch can see that coming; claiming it a success would be wrong.
            continue
        detail = ""
        if event is not None:
            stage = (event.details.get("timings") or {}).get("write")
            detail = f"; audit {event.trail}#{event.id} {event.kind} of {str(event.sha)[:12]}"
            if isinstance(stage, int | float) and last is not None:
                began = event.time - float(stage)
                detail += (f", its write stage ({stage:.2f}s, guard {event.details.get('guard_seconds')}s) "
                           f"began {last.time - began:.2f}s before that line")
        if w.forwarded is not None and last is not None:
            held = ("held across the membership change: " if w.forwarded < last.time else "")
            detail = (f"; {held}forwarded to the cluster {last.time - w.forwarded:.2f}s before that line"
                      + detail)
        v.append(f"{w.node} wrote CIB {w.version} at {_when(w.time, start)}, {since} "
                 f"({near_fault(ev.faults, w.time)}){detail}")
    return Verdict(name="no write without quorum", ok=not v, checked=len(ev.writes), violations=v)


def own_write_event(events: Sequence[Event], w: CibWrite) -> Event | None:
    """The writer's own audit event of a logged write: same node, same admin_epoch.epoch (the event
    keeps the version re-read after the write, status updates may have bumped num_updates), recorded
    within 10 s after it."""
    prefix = w.version.rsplit(".", 1)[0] + "."
    found = [e for e in events if e.node == w.node and e.trail == w.node and not e.observed
             and (e.cib_version_after or "").startswith(prefix) and w.time - 1 <= e.time <= w.time + 10]
    return min(found, key=lambda e: e.time) if found else None


def no_stale_revision(ev: Evidence, start: float) -> Verdict:
    """No revision applied after a newer one had been: in the trails (apply events, one per write) and
    in every node's marker as it changed on disk."""
    order = {sha: i for i, sha in enumerate(ev.git_order)}
    v = []
    applies = [e for e in unique_writes(ev.events, ["apply"]) if e.sha in order]
    newest: Event | None = None
    for e in applies:
        if newest is not None and order[e.sha or ""] < order[newest.sha or ""]:
            v.append(f"audit: {e.trail}#{e.id} {e.node} applied {str(e.sha)[:12]} (#{order[e.sha or '']}) at "
                     f"{_when(e.time, start)} after {newest.trail}#{newest.id} {newest.node} applied "
                     f"{str(newest.sha)[:12]} (#{order[newest.sha or '']}) at {_when(newest.time, start)} "
                     f"({near_fault(ev.faults, e.time)})")
        if newest is None or order[e.sha or ""] > order[newest.sha or ""]:
            newest = e
    checked = len(applies)
    for node in sorted({m.node for m in ev.markers}):
        best: MarkerSample | None = None
        for m in sorted((m for m in ev.markers if m.node == node), key=lambda m: m.time):
            if m.revision not in order:
                continue
            checked += 1
            if m.kind == "apply" and best is not None and order[m.revision] < order[best.revision or ""]:
                v.append(f"marker on {node}: {m.revision[:12]} (#{order[m.revision]}, event {m.event}) at "
                         f"{_when(m.time, start)} after {str(best.revision)[:12]} "
                         f"(#{order[best.revision or '']}) at {_when(best.time, start)} "
                         f"({near_fault(ev.faults, m.time)})")
            if best is None or order[m.revision] > order[best.revision or ""]:
                best = m
    return Verdict(name="no stale revision applied after a newer one", ok=not v, checked=checked,
                   violations=v)


def marked_bad(ev: Evidence) -> dict[str, list[str]]:
    """Every revision marked bad (CIB or corosync.conf), with the evidence that says so."""
    out: dict[str, list[str]] = {}
    for e in ev.events:
        if e.kind == "auto-rollback" and e.details.get("bad_revision"):
            out.setdefault(str(e.details["bad_revision"]), []).append(f"{e.trail}#{e.id} auto-rollback")
    for m in ev.markers:
        for sha, what in ((m.bad, "marker bad"), (m.corosync_bad, "marker corosync-bad")):
            if sha:
                tag = f"{what} on {m.node}"
                if tag not in out.setdefault(sha, []):
                    out[sha].append(tag)
    return out


def no_valid_commit_marked_bad(ev: Evidence) -> Verdict:
    allowed = {p.sha for p in ev.pushes if p.kind in ("invalid", "bad")}
    bad = marked_bad(ev)
    v = []
    for sha, why in bad.items():
        if sha not in allowed:
            push = next((p for p in ev.pushes if p.sha == sha), None)
            what = f"{push.kind}: {push.what}" if push else "not a soak push"
            v.append(f"{sha[:12]} ({what}) marked bad: "
                     + ", ".join(why[:6]) + (f" (+{len(why) - 6})" if len(why) > 6 else ""))
    return Verdict(name="no valid commit marked bad", ok=not v, checked=len(bad), violations=v)


def invalid_never_applied(ev: Evidence) -> Verdict:
    invalid = {p.sha: p for p in ev.pushes if p.kind == "invalid"}
    v = []
    for e in unique_writes(ev.events, ["apply"]):
        if e.sha in invalid:
            v.append(f"{e.trail}#{e.id}: invalid {e.sha[:12]} ({invalid[e.sha].what}) applied by {e.node}")
    for m in ev.markers:
        if m.revision in invalid and m.kind == "apply":
            v.append(f"marker on {m.node}: invalid {m.revision[:12]} applied")
    return Verdict(name="no invalid commit applied", ok=not v, checked=len(invalid), violations=v)


def _drift_text(e: Event) -> str:
    return json.dumps(e.diff) + json.dumps(e.details.get("conflicts", []))


def hand_edits_recorded(ev: Evidence, start: float) -> Verdict:
    drift = [e for e in ev.events if e.kind == "drift-detected" or e.details.get("conflicts")]
    texts = [(e, _drift_text(e)) for e in drift]
    v = []
    edits = [h for h in ev.hand_edits if h.ok]
    for h in edits:
        needle = f'"{h.token}"'
        if any(needle in t and e.time >= h.started - 1 for e, t in texts):
            continue
        # Not recorded as drift: did a write overwrite it (its diff has the edit's value as the old one)?
        old = f'"old": "{h.token}"'
        over = next((e for e in sorted(ev.events, key=lambda e: e.time)
                     if e.kind in ("apply", "drift-corrected", "auto-rollback", "rollback") and not e.observed
                     and old in json.dumps(e.diff)), None)
        why = "recorded in no trail"
        if over is not None:
            push = next((p for p in ev.pushes if p.sha == over.sha), None)
            pending = (f"; {push.sha[:12]} was pushed {h.started - push.pushed_at:.1f}s before the edit"
                       if push and push.pushed_at < h.started else "")
            why = (f"overwritten by {over.trail}#{over.id} {over.kind} at {_when(over.time, start)} "
                   f"(its diff has old={h.token}){pending}, with no drift event")
        v.append(f"hand edit on {h.node} at {_when(h.started, start)} ({h.how}): {why} "
                 f"({near_fault(ev.faults, h.started)})")
    return Verdict(name="every hand edit recorded", ok=not v, checked=len(edits), violations=v)


def no_false_drift(ev: Evidence, start: float) -> Verdict:
    """Every drift-detected event is explained by a hand edit (its diff carries a hand edit's value): an
    agent's own write taken for a hand edit is a false alarm (issue 10, item 2)."""
    tokens = [f'"{h.token}"' for h in ev.hand_edits]
    drift = [e for e in ev.events if e.kind == "drift-detected"]
    v = []
    for e in drift:
        text = json.dumps(e.diff)
        if not any(t in text for t in tokens):
            origin = e.details.get("origin") or {}
            v.append(f"{e.trail}#{e.id} at {_when(e.time, start)} by {e.node}: {e.summary[:140]} "
                     f"(origin {origin.get('update-client')}@{origin.get('update-origin')}; "
                     f"{near_fault(ev.faults, e.time)})")
    return Verdict(name="no agent write taken for a hand edit", ok=not v, checked=len(drift), violations=v)


def audit_chains_intact(ev: Evidence) -> Verdict:
    v = [f"{n.node}: `audit verify` failed: {n.audit_verify_out.strip()[:300]}"
         for n in ev.final if n.audit_verify_ok is not True]
    return Verdict(name="audit chains intact", ok=not v, checked=sum(n.audit_checked or 0 for n in ev.final),
                   violations=v)


def agents_alive(ev: Evidence) -> Verdict:
    """Every agent runs at the end, and every exit of one was a kill -9 the soak made (within 3 s)."""
    kills = [f for f in ev.faults if f.kind == "agent-kill"]
    v = [f"{n.node}: agent not running at the end (restarts {n.agent_restarts})"
         for n in ev.final if n.agent_running is not True]
    for x in ev.agent_exits:
        expected = "status=9/KILL" in x.line and any(
            k.node == x.node and k.started - 3 <= x.time <= k.started + 3 for k in kills)
        if not expected:
            v.append(f"{x.node}: unexpected agent exit: {x.line}")
    return Verdict(name="agents alive", ok=not v, checked=len(ev.final) + len(ev.agent_exits), violations=v)


def check(ev: Evidence, start: float) -> list[Verdict]:
    return [converged(ev), no_write_without_quorum(ev, start), no_stale_revision(ev, start),
            no_valid_commit_marked_bad(ev), invalid_never_applied(ev), hand_edits_recorded(ev, start),
            no_false_drift(ev, start), audit_chains_intact(ev), agents_alive(ev)]


def auto_rollbacks(ev: Evidence, start: float) -> list[dict[str, Any]]:
    """Each auto-rollback (CIB, or a corosync.conf rollout's) once, with its reason and the nearest fault:
    the 'why' of the table."""
    out = []
    for e in unique_writes(ev.events, ["auto-rollback"]):
        problems = e.details.get("problems") or []
        why = "; ".join(str(p.get("message", p)) if isinstance(p, dict) else str(p) for p in problems) \
            or e.error or e.summary
        push = next((p for p in ev.pushes if p.sha == e.details.get("bad_revision")), None)
        out.append({"event": f"{e.trail}#{e.id}", "at": round(e.time - start, 1), "node": e.node,
                    "what": "corosync.conf" if e.details.get("step") == "auto-rollback" else "CIB",
                    "revision": str(e.details.get("bad_revision", ""))[:12],
                    "push": f"{push.kind}: {push.what}" if push else "?", "why": why[:300],
                    "fault": near_fault(ev.faults, e.time)})
    return out
