"""Every primitive's resource or fence agent must exist where the configuration will run (pure).

A typo'd agent (`ocf:heartbeat:NoSuchAgent`) is not a style problem: Pacemaker fails the resource's
probe or start on every node, and a failed stop gets the node fenced. So a missing agent is an
error, named with the resource id, the agent and its line. Whether an agent exists is asked of an
`AgentCatalog` (controller.cluster.agents answers with the installed Pacemaker); when it cannot tell
(a `systemd:` unit on a machine whose PID 1 is not systemd) the finding is a warning that says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from lxml import etree

from controller.desired.findings import Finding, Severity
from controller.desired.substitute import Substituted, agent_name


class AgentCatalog(Protocol):
    """What the agents on a node are. `exists` is True/False when the catalog knows, None when it
    cannot tell here; `why_unknown` then says why (shown to the user)."""

    def exists(self, standard: str, provider: str | None, type: str) -> bool | None: ...

    def why_unknown(self, standard: str, provider: str | None, type: str) -> str: ...


def _agent_of(prim: etree._Element, templates: Mapping[str, etree._Element]
              ) -> tuple[str | None, str | None, str | None]:
    """(class, provider, type) of a primitive, its template's when it uses one (Pacemaker's rule:
    the primitive's own attributes win over the template's)."""
    tmpl = templates.get(prim.get("template") or "")

    def attr(name: str) -> str | None:
        value = prim.get(name)
        return value if value is not None or tmpl is None else tmpl.get(name)

    return attr("class"), attr("provider"), attr("type")


def check_agents(config: etree._Element, catalog: AgentCatalog, *, file: str, id_lines: Mapping[str, int],
                 substituted: Sequence[Substituted] = ()) -> list[Finding]:
    """One finding per primitive whose agent is missing (error) or could not be checked (warning).
    `config` is the <configuration> that will run (after substitution); `substituted` says which
    primitives were replaced, so a message names the agent the file asked for too."""
    templates = {t.get("id", ""): t for t in config.iter("template")}
    replaced = {s.resource: s for s in substituted}
    out: list[Finding] = []
    for prim in config.iter("primitive"):
        rid = prim.get("id", "")
        standard, provider, type_ = _agent_of(prim, templates)
        if not standard or not type_ or (standard == "ocf" and not provider):
            continue  # incomplete: the schema check (crm_verify) names it
        name = agent_name(standard, provider, type_)
        sub = replaced.get(rid)
        shown = f"{name} (run in place of {sub.original}: {sub.reason or 'substitution'})" if sub else name
        known = catalog.exists(standard, provider, type_)
        if known is True:
            continue
        kind = "fence agent" if standard == "stonith" else "resource agent"
        if known is False:
            message = (f"resource {rid!r}: {kind} {shown} does not exist (Pacemaker here has no such "
                       "agent): the resource cannot start, and a failed stop gets its node fenced")
            severity: Severity = "error"
        else:
            message = (f"resource {rid!r}: {kind} {shown} could not be checked here: "
                       f"{catalog.why_unknown(standard, provider, type_)}")
            severity = "warning"
        out.append(Finding(severity=severity, file=file, line=id_lines.get(rid), element=rid,
                           message=message))
    return out
