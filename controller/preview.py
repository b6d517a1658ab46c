"""`preview`: what a revision did on a real copy of the cluster, beside what `plan` said it would do (pure).

The shell (controller/sandbox/preview.py) brings a sandbox up on the base, has its agents apply the head,
and hands over what it saw as an `Observation`; `build_report` judges it and the renderers print it as
text, markdown (a pull-request comment) or JSON. Exit codes are `plan`'s: 0 no change, 1 applied and
verified, 2 the preview itself failed, 3 the head was refused, rolled back or left the cluster unhealthy.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, Field

from controller.cib.export import configuration_only, strip_managed
from controller.cib.xml import to_bytes
from controller.decide import Decision
from controller.decision_render import decision_markdown, decision_text
from controller.errors import InputError
from controller.health import health_problems
from controller.observed import ClusterStatus
from controller.secrets.preview import PreviewSecrets
from controller.snapshot import parse_snapshot

Outcome = Literal["no-change", "applied", "refused", "rolled-back", "unhealthy", "inconclusive", "failed",
                  "timeout"]

OUTCOME_EXIT: dict[str, int] = {"no-change": 0, "applied": 1, "refused": 3, "rolled-back": 3, "unhealthy": 3,
                                "inconclusive": 3, "failed": 3, "timeout": 2}

_OUTCOME_TEXT = {
    "no-change": "the head changes nothing on the base",
    "applied": "the agents applied the head and verified the cluster healthy",
    "refused": "the agent refused the head: nothing of it was applied",
    "rolled-back": "the cluster was unhealthy with the head; the agent restored the base configuration",
    "unhealthy": "the head was applied, and the cluster is unhealthy with it",
    "inconclusive": "the head was applied, but a fault clouded its verify: not shown healthy",
    "failed": "the agent failed to apply the head",
    "timeout": "the sandbox reached no verdict on the head in time",
}


class PreviewEvent(BaseModel):
    """An audit event as the preview shows it (configurations and patch left out)."""

    id: int
    event_id: str | None = None
    node: str
    kind: str
    outcome: str
    time: datetime
    summary: str = ""
    commit: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Fence(BaseModel):
    target: str
    action: str | None = None
    status: str | None = None
    text: str


class Observation(BaseModel):
    """What the shell saw on the sandbox, from the head's commit on."""

    base: str  # what the user named (a folder or a revision)
    head: str
    base_revision: str  # the commits of base and head in the preview's own repository
    head_revision: str
    snapshot: str | None = None  # the base came from this snapshot's configuration
    committed_at: datetime | None = None  # when the head was committed (None: nothing to commit)
    dc: str | None = None
    before: ClusterStatus | None = None  # the base, settled
    samples: list[ClusterStatus] = Field(default_factory=list)  # while the head was applied, in order
    after: ClusterStatus | None = None  # once the agents reached their verdict and the cluster settled
    events: list[PreviewEvent] = Field(default_factory=list)  # every node's, since the head's commit
    fences: list[Fence] = Field(default_factory=list)  # fencing since the head's commit
    crm_mon: str = ""
    timings: dict[str, float] = Field(default_factory=dict)  # the preview's phases, seconds
    timed_out: bool = False
    leftovers: dict[str, list[str]] = Field(default_factory=dict)
    secrets: PreviewSecrets = Field(default_factory=PreviewSecrets)  # how secrets.age was made fit


class PreviewReport(BaseModel):
    base: str
    head: str
    base_revision: str
    head_revision: str
    snapshot: str | None = None
    outcome: Outcome
    exit_code: int
    summary: str
    plan: Decision | None
    plan_exit_code: int | None
    agrees: bool  # the sandbox did what the plan said (same exit code)
    verify: str
    predicted: list[str]
    observed: list[str]
    fencing: list[str]
    rollout: list[str]
    health: list[str]
    events: list[PreviewEvent]
    timings: dict[str, float]
    agent_timings: dict[str, float]  # the apply event's stages (fetch, load, ..., write, verify)
    crm_mon: str
    leftovers: dict[str, list[str]]
    secrets: PreviewSecrets = Field(default_factory=PreviewSecrets)


def head_events(obs: Observation) -> list[PreviewEvent]:
    """The events about the head: its commit's, and the corosync.conf rollout of its revision."""
    return [e for e in obs.events
            if e.commit == obs.head_revision or e.details.get("revision") == obs.head_revision
            or e.details.get("bad_revision") == obs.head_revision]


def judge(plan: Decision | None, obs: Observation) -> tuple[Outcome, list[str]]:
    """The outcome of the head on the sandbox, and the health problems it left (before vs after)."""
    events = head_events(obs)
    kinds = {(e.kind, e.outcome) for e in events}
    problems = [p.message for p in health_problems(obs.before, obs.after)] \
        if obs.before is not None and obs.after is not None else []
    if any(k == "refused" for k, _ in kinds):
        return "refused", problems
    if any(k == "auto-rollback" for k, _ in kinds):
        return "rolled-back", problems
    if ("verify", "failure") in kinds:
        return "unhealthy", problems
    if any(k == "error" for k, _ in kinds):
        return "failed", problems
    applied = ("apply", "success") in kinds
    if applied and ("verify", "inconclusive") in kinds and ("verify", "success") not in kinds:
        return "inconclusive", problems
    if applied and problems:
        return "unhealthy", problems
    if obs.timed_out:
        return "timeout", problems
    if applied:
        return "applied", problems
    if plan is not None and plan.verdict == "no-change" and obs.committed_at is None:
        return "no-change", problems
    return "timeout", problems


def _where(roles: set[tuple[str, str]]) -> str:
    if not roles:
        return "absent"
    by_role: dict[str, list[str]] = {}
    for role, node in sorted(roles):
        by_role.setdefault(role, []).append(node)
    return ", ".join(f"{role} on {', '.join(n for n in nodes if n)}" if any(nodes) else role
                     for role, nodes in by_role.items())


def _roles(st: ClusterStatus) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for r in st.resources:
        out.setdefault(r.id, set()).update((r.role, n) for n in (r.nodes or [""]))
    return out


def observed_actions(series: list[ClusterStatus]) -> list[str]:
    """What the cluster really did, step by step: each resource whose role or place changed from one status
    sample to the next, and every new failed action."""
    lines: list[str] = []
    for prev, cur in pairwise(series):
        a, b = _roles(prev), _roles(cur)
        for rid in sorted(set(a) | set(b)):
            if a.get(rid, set()) != b.get(rid, set()):
                lines.append(f"{rid}: {_where(a.get(rid, set()))} -> {_where(b.get(rid, set()))}")
        seen = {(f.op_key, f.node, f.call) for f in prev.failed_actions}
        for f in cur.failed_actions:
            if (f.op_key, f.node, f.call) not in seen:
                lines.append(f"failed: {f.op_key} on {f.node}: {f.exitreason or f.exitstatus or f.status}")
    return lines


def predicted_actions(plan: Decision | None) -> list[str]:
    impact = plan.plan.impact if plan is not None else None
    if impact is None:
        return []
    return [f"{r.action} {r.resource}" + (f" on {r.where()}" if r.where() else "")
            for r in impact.resources] + [f"{a.task} {a.node}" for a in impact.node_actions]


def _verify_text(outcome: Outcome, events: list[PreviewEvent]) -> str:
    verifies = [e for e in events if e.kind == "verify"]
    if verifies:
        return "; ".join(f"{e.outcome}: {e.summary}" for e in verifies)
    return {"applied": "healthy (verified by the agent; no problem seen)",
            "refused": "not run: nothing was applied", "no-change": "not run: nothing to apply"}.get(
        outcome, "no verify recorded")


def build_report(plan: Decision | None, obs: Observation) -> PreviewReport:
    outcome, problems = judge(plan, obs)
    events = head_events(obs)
    apply = next((e for e in events if e.kind == "apply" and e.outcome == "success"), None)
    timings = dict(obs.timings)
    if apply is not None and obs.committed_at is not None:
        timings["commit_to_apply"] = round((apply.time - obs.committed_at).total_seconds(), 2)
    series = [s for s in (obs.before, *obs.samples, obs.after) if s is not None]
    exit_code = OUTCOME_EXIT[outcome]
    plan_exit = plan.exit_code if plan is not None else None
    return PreviewReport(
        base=obs.base, head=obs.head, base_revision=obs.base_revision, head_revision=obs.head_revision,
        snapshot=obs.snapshot, outcome=outcome, exit_code=exit_code, summary=_OUTCOME_TEXT[outcome],
        plan=plan, plan_exit_code=plan_exit, agrees=plan_exit == exit_code,
        verify=_verify_text(outcome, events), predicted=predicted_actions(plan),
        observed=observed_actions(series), fencing=[f.text for f in obs.fences],
        rollout=[f"{e.node}: {e.summary}" for e in events if e.kind == "rollout-step"
                 or (e.kind in ("verify", "auto-rollback") and e.details.get("stage") == "rollout")],
        health=problems, events=sorted(events, key=lambda e: e.time), timings=timings,
        agent_timings=dict(apply.details.get("timings") or {}) if apply is not None else {},
        crm_mon=obs.crm_mon, leftovers={k: v for k, v in obs.leftovers.items() if v}, secrets=obs.secrets)


def snapshot_base_files(text: str, source: str) -> dict[str, str]:
    """The desired folder a snapshot (controller/snapshot.py) stands for: corosync.conf as it is,
    cib.xml the configuration with what the cluster and ha-gitops write themselves left out (what
    `export --format xml` writes)."""
    snap = parse_snapshot(text, source=source)
    if snap.corosync_conf is None:
        raise InputError("the snapshot has no corosync.conf (taken on a node without one?)", file=source)
    config = configuration_only(strip_managed(snap.cib_element()))
    return {"corosync.conf": snap.corosync_conf, "cib.xml": to_bytes(config).decode() + "\n"}


# ------------------------------------------------------------------ renderers
def _plan_line(r: PreviewReport) -> str:
    if r.plan is None:
        return "plan: -"
    said = f"plan said {r.plan.verdict} (exit {r.plan_exit_code})"
    return said + ("; the sandbox agrees" if r.agrees else f"; the sandbox DIFFERS: {r.outcome} "
                   f"(exit {r.exit_code})")


def _secs(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" if v < 10 else f"{k} {v:.1f}s" for k, v in timings.items())


def report_text(r: PreviewReport) -> str:
    lines = [f"Preview of {r.head} ({r.head_revision[:12]}) on "
             + (f"the configuration of snapshot {r.snapshot}" if r.snapshot else f"{r.base}")
             + f" ({r.base_revision[:12]}) in a sandbox",
             f"Outcome: {r.outcome} ({r.summary}); exit {r.exit_code}", _plan_line(r),
             f"Verify: {r.verify}"]
    if note := r.secrets.note():
        lines.append(f"Secrets: {note}")

    def section(title: str, items: list[str], empty: str) -> None:
        lines.append(f"{title}:" + ("" if items else f" {empty}"))
        lines.extend(f"  {i}" for i in items)

    section("Predicted actions", r.predicted, "none")
    section("Observed actions", r.observed, "none")
    section("Fencing", r.fencing, "none")
    section("corosync.conf rollout", r.rollout, "none")
    if r.health:
        section("Health problems left", r.health, "none")
    section("Events", [f"{e.node} {e.kind} {e.outcome}: {e.summary}" for e in r.events], "none")
    lines.append(f"Timings: {_secs(r.timings)}")
    if r.agent_timings:
        lines.append(f"Agent's pass: {_secs(r.agent_timings)}")
    if r.leftovers:
        lines.append(f"LEFT BEHIND: {r.leftovers}")
    if r.plan is not None:
        lines += ["", "The plan (on the base, before the head was committed):",
                  decision_text(r.plan).rstrip()]
    if r.crm_mon:
        lines += ["", "crm_mon after:", r.crm_mon.rstrip()]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def report_markdown(r: PreviewReport) -> str:
    icon = {"applied": "✅", "no-change": "✅", "timeout": "⚠️"}.get(r.outcome, "⛔")
    where = f"the configuration of snapshot `{r.snapshot}`" if r.snapshot else f"`{r.base}`"
    out = [f"### ha-gitops preview: `{r.head}` on {where}", "",
           f"{icon} **{r.outcome}**: {r.summary} (exit {r.exit_code})", "",
           f"{_plan_line(r)}", "",
           "| | |", "|---|---|",
           f"| verify | {_md(r.verify)} |",
           *([f"| secrets | {_md(note)} |"] if (note := r.secrets.note()) else []),
           f"| predicted actions | {_md('; '.join(r.predicted) or 'none')} |",
           f"| observed actions | {_md('; '.join(r.observed) or 'none')} |",
           f"| fencing | {_md('; '.join(r.fencing) or 'none')} |",
           f"| corosync.conf rollout | {_md('; '.join(r.rollout) or 'none')} |"]
    if r.health:
        out.append(f"| health problems left | {_md('; '.join(r.health))} |")
    out.append(f"| timings | {_md(_secs(r.timings))} |")
    if r.agent_timings:
        out.append(f"| agent's pass | {_md(_secs(r.agent_timings))} |")
    if r.leftovers:
        out.append(f"| LEFT BEHIND | {_md(str(r.leftovers))} |")
    out += ["", "<details><summary>Audit events</summary>", ""]
    out += [f"- `{e.node}` **{e.kind}** {e.outcome}: {_md(e.summary)}" for e in r.events] or ["- none"]
    out += ["", "</details>"]
    if r.plan is not None:
        out += ["", "<details><summary>The plan</summary>", "", decision_markdown(r.plan).rstrip(), "",
                "</details>"]
    if r.crm_mon:
        out += ["", "<details><summary>crm_mon after</summary>", "", "```", r.crm_mon.rstrip(), "```", "",
                "</details>"]
    return "\n".join(out) + "\n"


def report_json(r: PreviewReport) -> dict[str, Any]:
    return r.model_dump(mode="json")
