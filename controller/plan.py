"""Desired vs observed -> a plan: what would change, in which order, behind which gate (pure).

A plan is a value (Terraform's lesson): it can be printed as text, as markdown for a pull-request comment,
or as JSON, stored, and reviewed before anything touches the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, Field

from controller.cib.document import as_cib
from controller.cib.marker import OWN_RULES
from controller.cib.normalize import IgnoreRule
from controller.cib.render import ObjectChange, render_text
from controller.corosync.diff import CorosyncChange, diff_corosync, highest_class
from controller.corosync.document import parse_corosync
from controller.corosync.rollout_plan import node_order
from controller.desired.state import DesiredState
from controller.desired.substitute import Substituted, Substitution, substitute
from controller.impact import Impact

StepKind = Literal["cib-patch", "corosync-write", "corosync-reload", "corosync-rolling-restart",
                   "corosync-cluster-restart"]


class PlanStep(BaseModel):
    kind: StepKind
    description: str
    gate: str  # what must hold before the step starts


class Plan(BaseModel):
    cluster: str
    revision: str | None = None
    cib_changes: list[ObjectChange] = Field(default_factory=list)
    corosync_changes: list[CorosyncChange] = Field(default_factory=list)
    corosync_class: str | None = None
    substitutions: list[Substituted] = Field(default_factory=list)
    steps: list[PlanStep] = Field(default_factory=list)
    impact: Impact | None = None  # filled by the shell from the live status (crm_simulate)
    notes: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.cib_changes or self.corosync_changes)


def effective_desired(desired: DesiredState, substitutions: Sequence[Substitution] = ()
                      ) -> tuple[etree._Element, list[Substituted]]:
    """The <cib> the cluster should hold: the desired configuration, substituted where agents cannot run."""
    return substitute(as_cib(desired.configuration()), list(substitutions))


def proposed_configuration(desired: DesiredState, live_cib: etree._Element,
                           substitutions: Sequence[Substitution] = ()) -> etree._Element:
    """The configuration exactly as a write would leave it (live ids adopted, managed fields kept)."""
    from controller.cib.diff import build_live_patch

    wanted, _ = effective_desired(desired, substitutions)
    return build_live_patch(live_cib, wanted, ignore=[*desired.policy.ignore, *OWN_RULES]).new


def make_plan(desired: DesiredState, live_cib: etree._Element, live_corosync: str | None, *,
              revision: str | None = None, substitutions: Sequence[Substitution] = (),
              extra_ignore: Sequence[IgnoreRule] = ()) -> Plan:
    from controller.cib.diff import build_live_patch

    wanted, substituted = effective_desired(desired, substitutions)
    ignore = [*desired.policy.ignore, *extra_ignore, *OWN_RULES]
    cib = build_live_patch(live_cib, wanted, ignore=ignore)
    plan = Plan(cluster=desired.name, revision=revision, substitutions=substituted,
                cib_changes=cib.objects() if cib.changed else [])
    if live_corosync is not None:
        changes = diff_corosync(parse_corosync(live_corosync, source="live corosync.conf"),
                                desired.corosync_document())
        plan.corosync_changes = list(changes)
        plan.corosync_class = highest_class(changes) if changes else None
    if plan.cib_changes:
        plan.steps.append(PlanStep(
            kind="cib-patch", gate="cluster quorate; live CIB version unchanged since read",
            description=f"one atomic CIB patch: {len(plan.cib_changes)} object(s) "
                        f"({_summary(plan.cib_changes)})"))
    if plan.corosync_changes:
        cls = plan.corosync_class
        order = ", ".join(standby_first(wanted))
        plan.steps.append(PlanStep(kind="corosync-write", gate="`corosync -t` accepts the file on each node",
                                   description=f"write corosync.conf on every node in this order: {order}"))
        plan.steps.append(PlanStep(kind=f"corosync-{cls}",  # type: ignore[arg-type]
                                   gate="all expected nodes online and quorate before each node",
                                   description={"reload": "one corosync-cfgtool -R, then check cmap on "
                                                          "every node",
                                                "rolling-restart": "restart one node at a time, standby "
                                                                   "nodes first",
                                                "cluster-restart": "stop and start all nodes together "
                                                                   "(maintenance window only)",
                                                }[cls or "reload"]))
    return plan


def standby_first(cib: etree._Element) -> list[str]:
    """The rollout order: the one rule (controller/corosync/rollout_plan.py), standby nodes first."""
    return node_order(cib)


def _summary(changes: Sequence[ObjectChange]) -> str:
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    return ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))


# ---------------------------------------------------------------- rendering
def render_plan_text(plan: Plan) -> str:
    lines = [f"Plan for cluster {plan.cluster}" + (f" at {plan.revision[:12]}" if plan.revision else "")]
    if not plan.changed:
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
        for s in plan.substitutions:
            lines.append(f"  {s.resource}: {s.original} runs as {s.replacement} ({s.reason})")
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
    return "\n".join(out).rstrip() + "\n"


def _md(detail: Any) -> str:
    if hasattr(detail, "field"):
        return f"`{detail.field}`: {detail.old if detail.old is not None else '∅'} → " \
               f"{detail.new if detail.new is not None else '∅'}"
    return str(detail)
