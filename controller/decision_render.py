"""The decision as people read it: text for a terminal, markdown for a pull-request comment (pure).

JSON is the Decision model itself (`Decision.model_dump`), plus `exit_code`.
"""

from __future__ import annotations

from controller.decide import Decision
from controller.plan import render_plan_markdown, render_plan_text

_VERDICT_TEXT = {
    "no-change": "no change: the live cluster matches the desired state",
    "apply": "the agent would apply this revision",
    "correct-drift": "the agent would undo a hand edit (drift) and restore the desired state",
    "report-drift": "the live cluster was edited by hand (drift); the agent records it, it does not undo it",
    "refuse": "the agent would REFUSE this revision: nothing of it is applied",
    "wait": "the agent would apply this revision once the cluster allows it",
}
_FIRST_CONTACT_WAIT = "ha-gitops never managed this cluster and the revision deletes: the agents wait for " \
    "`ha-gitops adopt`"


def _verdict_text(d: Decision) -> str:
    return _FIRST_CONTACT_WAIT if "first-contact" in d.codes else _VERDICT_TEXT.get(d.verdict, d.verdict)


def decision_text(d: Decision) -> str:
    lines = [f"Decision: {d.verdict} ({_verdict_text(d)}); exit {d.exit_code}"]
    for r in d.reasons:
        lines.append("  " + r.text().replace("\n", "\n  "))
    warnings = [f for f in d.findings if f.severity == "warning"]
    if warnings:
        lines.append("Warnings:")
        lines += [f"  {f.where()}: {f.message}" for f in warnings]
    if d.drift is not None:
        towards = "the desired state" if d.drift.target == "head" else "the configuration the last " \
            "ha-gitops write left"
        lines.append(f"Drift: {len(d.drift.changes)} object(s) edited by hand; "
                     + (f"corrected towards {towards}" if d.drift.correct else _uncorrected(d)))
        lines += [f"  ~ {c.kind} {c.id} ({c.action})" for c in d.drift.changes]
    lines.append("")
    return "\n".join(lines) + render_plan_text(d.plan)


def decision_markdown(d: Decision) -> str:
    icon = {"refuse": "⛔", "no-change": "✅", "wait": "⏳"}.get(d.verdict, "📝")
    out = [f"{icon} **{d.verdict}**: {_verdict_text(d)} (exit {d.exit_code})", ""]
    for r in d.reasons:
        out.append(f"- `{r.code}`: {_md(r.message)}")
        out += [f"  - `{f.where()}`: {_md(f.message)}" for f in r.findings if f.severity == "error"]
        out += [f"  - `{v.rule}`: {_md(v.message)}" for v in r.violations]
    warnings = [f for f in d.findings if f.severity == "warning"]
    if warnings:
        out += ["", "<details><summary>Warnings</summary>", ""]
        out += [f"- `{f.where()}`: {_md(f.message)}" for f in warnings]
        out += ["", "</details>"]
    if d.drift is not None:
        out += ["", f"**Drift**: {len(d.drift.changes)} object(s) edited by hand, "
                + ("corrected" if d.drift.correct else _uncorrected(d))]
    out.append("")
    return "\n".join(out) + render_plan_markdown(d.plan)


def _uncorrected(d: Decision) -> str:
    if d.verdict in ("apply", "wait"):  # a new revision goes over it
        return "recorded; the apply of this revision replaces it"
    return "recorded, not corrected"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
