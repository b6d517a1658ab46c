"""Desired vs observed -> a plan: what would change, in which order, behind which gate (pure).

A plan is a value (Terraform's lesson): it can be printed as text, as markdown for a pull-request comment,
or as JSON, stored, and reviewed before anything touches the cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, Field

from controller.cib.diff import build_live_patch
from controller.cib.document import as_cib, canonical
from controller.cib.marker import OWN_RULES
from controller.cib.normalize import IgnoreRule
from controller.cib.render import ObjectChange, render_text
from controller.corosync.diff import ChangeClass, CorosyncChange, diff_corosync, highest_class
from controller.corosync.document import parse_corosync
from controller.corosync.rollout_plan import node_order
from controller.desired.state import DesiredState
from controller.desired.substitute import Substituted, Substitution, substitute
from controller.errors import HaGitopsError
from controller.impact import Impact

StepKind = Literal["cib-stop-first", "cib-patch", "corosync-write", "corosync-reload",
                   "corosync-rolling-restart", "corosync-cluster-restart"]


class PlanStep(BaseModel):
    kind: StepKind
    description: str
    gate: str  # what must hold before the step starts


class SecretChange(BaseModel):
    """A `@secret:` parameter in the plan: its fingerprint and whether this node's store holds it."""

    resource: str
    param: str
    name: str
    fingerprint: str | None = None
    state: Literal["changed", "unchanged", "unknown"] = "unknown"  # unknown: not decrypted/observed here


class Plan(BaseModel):
    cluster: str
    revision: str | None = None
    cib_changes: list[ObjectChange] = Field(default_factory=list)
    corosync_changes: list[CorosyncChange] = Field(default_factory=list)
    corosync_class: ChangeClass | None = None
    node_order: list[str] = Field(default_factory=list)  # the corosync.conf rollout order
    substitutions: list[Substituted] = Field(default_factory=list)
    steps: list[PlanStep] = Field(default_factory=list)
    impact: Impact | None = None  # filled by the shell from the live status (crm_simulate)
    notes: list[str] = Field(default_factory=list)
    secrets: list[SecretChange] = Field(default_factory=list)  # fingerprints only, never values

    @property
    def changed(self) -> bool:
        return bool(self.cib_changes or self.corosync_changes)

    @property
    def removed_resources(self) -> list[str]:
        return [c.id for c in self.cib_changes if c.kind == "resource" and c.action == "removed"]


@dataclass
class CibPlan:
    """The CIB part of a plan: the desired <cib> as it will be written, and what differs from live."""

    wanted: etree._Element  # the desired <cib>, substitutions applied
    substituted: list[Substituted]
    digest: str  # config_digest(wanted): what the marker records as written
    changes: list[ObjectChange]


def effective_desired(desired: DesiredState, substitutions: Sequence[Substitution] = ()
                      ) -> tuple[etree._Element, list[Substituted]]:
    """The <cib> the cluster should hold: the desired configuration, substituted where agents cannot run."""
    return substitute(as_cib(desired.configuration()), list(substitutions))


def config_digest(cib: etree._Element) -> str:
    """Identity of a desired configuration's content (ids and order included, marker excluded)."""
    conf = cib.find("configuration")
    return hashlib.sha256(canonical(conf).encode() if conf is not None else b"").hexdigest()[:16]


def cib_plan(desired: DesiredState, live_cib: etree._Element, substitutions: Sequence[Substitution] = (),
             extra_ignore: Sequence[IgnoreRule] = ()) -> CibPlan:
    wanted, substituted = effective_desired(desired, substitutions)
    d = build_live_patch(live_cib, wanted, ignore=[*desired.policy.ignore, *extra_ignore, *OWN_RULES])
    return CibPlan(wanted=wanted, substituted=list(substituted), digest=config_digest(wanted),
                   changes=d.objects() if d.changed else [])


def proposed_configuration(desired: DesiredState, live_cib: etree._Element,
                           substitutions: Sequence[Substitution] = ()) -> etree._Element:
    """The configuration exactly as a write would leave it (live ids adopted, managed fields kept)."""
    wanted, _ = effective_desired(desired, substitutions)
    return build_live_patch(live_cib, wanted, ignore=[*desired.policy.ignore, *OWN_RULES]).new


def corosync_part(desired: DesiredState, live_text: str | None
                  ) -> tuple[list[CorosyncChange], ChangeClass | None]:
    """This node's corosync.conf against the desired one (None: not known here, nothing compared)."""
    if live_text is None:
        return [], None
    try:
        live = parse_corosync(live_text, source="live corosync.conf")
    except HaGitopsError:
        # An unparsable live file: the rollout restarts (never reloads) onto the desired one.
        return [CorosyncChange(path="(whole file)", old="(unparsable)", new="(desired)",
                               change_class="rolling-restart")], "rolling-restart"
    changes = list(diff_corosync(live, desired.corosync_document()))
    return changes, highest_class(changes) if changes else None


def make_plan(desired: DesiredState, live_cib: etree._Element, live_corosync: str | None, *,
              revision: str | None = None, substitutions: Sequence[Substitution] = (),
              extra_ignore: Sequence[IgnoreRule] = ()) -> Plan:
    """The changes alone (no verdict): controller.decide.decide builds the whole decision on this."""
    cib = cib_plan(desired, live_cib, substitutions, extra_ignore)
    return plan_of(desired.name, revision, cib, *corosync_part(desired, live_corosync))


def plan_of(cluster: str, revision: str | None, cib: CibPlan, corosync_changes: list[CorosyncChange],
            corosync_class: ChangeClass | None, impact: Impact | None = None) -> Plan:
    """The plan for these CIB and corosync.conf changes: the rollout's node order and the steps."""
    plan = Plan(cluster=cluster, revision=revision, substitutions=cib.substituted, cib_changes=cib.changes,
                corosync_changes=corosync_changes, corosync_class=corosync_class,
                node_order=node_order(cib.wanted), impact=impact)
    plan.steps = plan_steps(plan)
    return plan


def plan_steps(plan: Plan) -> list[PlanStep]:
    """The steps an apply takes, in order, each with the gate it waits for."""
    steps: list[PlanStep] = []
    if plan.removed_resources:
        steps.append(PlanStep(kind="cib-stop-first", gate="cluster quorate",
                              description="stop the resources removed from git (target-role=Stopped) and "
                                          f"wait for them: {', '.join(plan.removed_resources)}"))
    if plan.cib_changes:
        steps.append(PlanStep(
            kind="cib-patch", gate="cluster quorate; live CIB version unchanged since read",
            description=f"one atomic CIB patch: {len(plan.cib_changes)} object(s) "
                        f"({_summary(plan.cib_changes)}), then verify (settle, health) and roll back "
                        "if unhealthy"))
    if plan.corosync_changes:
        cls = plan.corosync_class or "reload"
        order = ", ".join(plan.node_order)
        steps.append(PlanStep(kind="corosync-write", gate="`corosync -t` accepts the file on each node",
                              description=f"write corosync.conf on every node in this order: {order}"))
        steps.append(PlanStep(kind=f"corosync-{cls}",  # type: ignore[arg-type]
                              gate="all expected nodes online and quorate before each node",
                              description={"reload": "one corosync-cfgtool -R, then check cmap on every node",
                                           "rolling-restart": "restart one node at a time, standby nodes "
                                                              f"first ({order})",
                                           "cluster-restart": "stop and start all nodes together "
                                                              "(maintenance window only)"}[cls]))
    return steps


def _summary(changes: Sequence[ObjectChange]) -> str:
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    return ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))


# ---------------------------------------------------------------- rendering
def render_plan_text(plan: Plan) -> str:
    lines = [f"Plan for cluster {plan.cluster}" + (f" at {plan.revision[:12]}" if plan.revision else "")]
    if not plan.changed and not any(sc.state == "changed" for sc in plan.secrets):
        lines.append("No changes: the live cluster matches the desired state.")
    if plan.cib_changes:
        lines.append("")
        lines.append("CIB changes:")
        lines.append(render_text(plan.cib_changes).rstrip())
    if plan.corosync_changes:
        lines.append("")
        lines.append(f"corosync.conf changes ({plan.corosync_class}):")
        for c in plan.corosync_changes:
            lines.append(f"  ~ {c.path}: {c.old if c.old is not None else '(unset)'} -> "
                         f"{c.new if c.new is not None else '(unset)'}  [{c.change_class}]")
    if plan.secrets:
        lines.append("")
        lines.append("Secrets (this node's Pacemaker secrets store; values never shown):")
        for sc in plan.secrets:
            what = {"changed": "secret changed", "unchanged": "unchanged",
                    "unknown": "secret (not decrypted here)"}[sc.state]
            lines.append(f"  {sc.resource}: {sc.param}: {what}  (@secret:{sc.name}"
                         + (f", {sc.fingerprint}" if sc.fingerprint else "") + ")")
    if plan.impact is not None:
        lines.append("")
        lines.append(plan.impact.text().rstrip())
    if plan.steps:
        lines.append("")
        lines.append("Steps:")
        for i, s in enumerate(plan.steps, 1):
            lines.append(f"  {i}. {s.kind}: {s.description}  (gate: {s.gate})")
    if plan.substitutions:
        lines.append("")
        lines.append("Substituted (this cluster cannot run these agents; desired files unchanged):")
        for sub in plan.substitutions:
            lines.append(f"  {sub.resource}: {sub.original} runs as {sub.replacement} ({sub.reason})")
    lines.extend(f"Note: {n}" for n in plan.notes)
    return "\n".join(lines) + "\n"


def render_plan_markdown(plan: Plan) -> str:
    head = f"### ha-gitops plan: `{plan.cluster}`" + (f" at `{plan.revision[:12]}`" if plan.revision else "")
    out = [head, ""]
    if not plan.changed:
        out.append("No changes: the live cluster matches the desired state.")
    if plan.cib_changes:
        out += ["#### CIB", "", "| | object | change |", "|---|---|---|"]
        sym = {"added": "+", "removed": "-", "changed": "~", "moved": "↕"}
        for c in plan.cib_changes:
            details = "<br>".join(_md(d) for d in c.details) or c.action
            out.append(f"| {sym.get(c.action, '~')} | {c.kind} `{c.id}` | {details} |")
        out.append("")
    if plan.corosync_changes:
        out += [f"#### corosync.conf ({plan.corosync_class})", "", "| key | old | new | class |",
                "|---|---|---|---|"]
        for cc in plan.corosync_changes:
            out.append(f"| `{cc.path}` | {cc.old or ''} | {cc.new or ''} | {cc.change_class} |")
        out.append("")
    if plan.impact is not None:
        out += [plan.impact.markdown().rstrip(), ""]
    if plan.steps:
        out += ["#### Steps", ""]
        out += [f"{i}. **{s.kind}**: {s.description} (gate: {s.gate})" for i, s in enumerate(plan.steps, 1)]
        out.append("")
    if plan.substitutions:
        out += ["#### Substituted", ""]
        out += [f"- `{s.resource}`: `{s.original}` runs as `{s.replacement}` ({s.reason})"
                for s in plan.substitutions]
        out.append("")
    # What the plan was made against, what it could not predict: a reviewer must see it too.
    out += [f"- **Note**: {n}" for n in plan.notes]
    return "\n".join(out).rstrip() + "\n"


def _md(detail: Any) -> str:
    if hasattr(detail, "field"):
        return f"`{detail.field}`: {detail.old if detail.old is not None else '∅'} → " \
               f"{detail.new if detail.new is not None else '∅'}"
    return str(detail)
