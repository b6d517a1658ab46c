"""Impact prediction: what Pacemaker would do to resources if a configuration were applied (pure).

crm_simulate (run by the shell: controller/cluster/simulate.py) runs the scheduler offline on the live
<status> with the proposed <configuration>; its transition summary (``--output-as=xml``:
``<actions><rsc_action .../>``) is turned into one ResourceImpact per resource instance. The live CIB
alone is simulated too, and whatever it would do anyway (a pending recovery, a start after a failure)
is subtracted, so only the change is blamed.

The element is written by Pacemaker's "rsc-action-item" message (lib/pacemaker/pcmk_output.c): the
verb is one of start, stop, restart, recover, move, migrate, reload, promote, demote, re-promote;
``node`` is set for a start or stop, ``source`` (and ``dest`` when the node changes) otherwise;
``role``/``next-role`` for promotable instances; ``reason`` and ``blocked`` when known.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict

from controller.cib.document import CibVersion
from controller.cib.xml import attr_items, parse_xml_bytes
from controller.errors import HaGitopsError, InputError

Action = Literal["start", "stop", "restart", "move", "reload", "promote", "demote"]
# What a change may do to a running service; start and reload leave it up.
DISRUPTIVE: frozenset[str] = frozenset({"stop", "restart", "move", "demote"})

_CONTAINERS = ("group", "clone", "master", "bundle")


class SimulationError(HaGitopsError):
    """crm_simulate refused the CIB or failed; names which run (proposed or baseline)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class RscAction(_Frozen):
    """One <rsc_action> of crm_simulate's transition summary, as Pacemaker wrote it."""

    action: str  # Pacemaker's verb, lower case
    resource: str  # instance id as reported, e.g. "stonithssh:0"
    node: str | None = None
    source: str | None = None
    dest: str | None = None
    role: str | None = None
    next_role: str | None = None
    reason: str | None = None
    blocked: bool = False

    def key(self) -> tuple[str | None, ...]:
        """Identity for baseline subtraction: the reason text may differ for the same action."""
        return (self.action, self.resource, self.node, self.source, self.dest, self.role, self.next_role)


class NodeAction(_Frozen):
    """A node-level action in the summary (fencing, shutdown)."""

    task: str
    node: str
    reason: str | None = None


class ResourceImpact(_Frozen):
    resource: str
    parent: str | None = None  # the group/clone/bundle directly containing it
    containers: list[str] = []  # every enclosing group/clone/bundle, innermost first
    action: Action
    pacemaker_action: str  # the verb crm_simulate used (recover, migrate, re-promote, ...)
    nodes: list[str]  # [node] or [from, to] for a move
    role: str | None = None
    next_role: str | None = None
    reason: str | None = None
    blocked: bool = False

    @property
    def base_id(self) -> str:
        """The configured id ("stonithssh" for the clone instance "stonithssh:0")."""
        return _base_id(self.resource)

    def covers(self, ids: Iterable[str]) -> bool:
        """True when this resource or any container of it is one of ids."""
        wanted = set(ids)
        return self.resource in wanted or self.base_id in wanted or any(c in wanted for c in self.containers)

    def where(self) -> str:
        return " -> ".join(self.nodes)


class Impact(_Frozen):
    resources: list[ResourceImpact] = []
    node_actions: list[NodeAction] = []
    baseline: list[ResourceImpact] = []  # would happen without the change; not blamed on it

    def of(self, *actions: str) -> list[ResourceImpact]:
        return [r for r in self.resources if r.action in actions]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.action for r in self.resources))

    @property
    def disruptive(self) -> bool:
        return bool(self.node_actions) or any(r.action in DISRUPTIVE for r in self.resources)

    def text(self) -> str:
        if not self.resources and not self.node_actions:
            lines = ["Predicted impact: no resource actions"]
        else:
            lines = ["Predicted impact:"]
            rows = [(r.action + (" (blocked)" if r.blocked else ""), _label(r), r.where(),
                     _reason_text(r)) for r in self.resources]
            widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
            for row in rows:
                line = "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
                lines.append((line + ("  " + row[3] if row[3] else "")).rstrip())
            lines.extend(f"  {n.task} {n.node}" + (f"  due to {n.reason}" if n.reason else "")
                         for n in self.node_actions)
        if self.baseline:
            lines.append(f"  (not counted: {len(self.baseline)} action(s) the cluster would take anyway: "
                         + ", ".join(f"{r.action} {r.resource}" for r in self.baseline) + ")")
        return "\n".join(lines)

    def markdown(self) -> str:
        """A table for the pull-request comment."""
        if not self.resources and not self.node_actions:
            out = ["**Predicted impact:** no resource actions."]
        else:
            out = ["**Predicted impact** (crm_simulate on the live status):", "",
                   "| Action | Resource | In | Node(s) | Reason |", "|---|---|---|---|---|"]
            for r in self.resources:
                action = f"**{r.action}**" if r.action in DISRUPTIVE else r.action
                if r.blocked:
                    action += " (blocked)"
                if r.pacemaker_action != r.action:
                    action += f" ({r.pacemaker_action})"
                cells = [action, f"`{r.resource}`", f"`{r.parent}`" if r.parent else "",
                         " → ".join(r.nodes), r.reason or ""]
                out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
            for n in self.node_actions:
                out.append("| " + " | ".join(_md_cell(c) for c in
                                             [f"**{n.task}**", "", "", n.node, n.reason or ""]) + " |")
        if self.baseline:
            out += ["", f"_Not counted: {len(self.baseline)} action(s) the cluster would take anyway: "
                    + _md_cell(", ".join(f"{r.action} {r.resource}" for r in self.baseline)) + "._"]
        return "\n".join(out)


def _label(r: ResourceImpact) -> str:
    return f"{r.resource} (in {r.parent})" if r.parent else r.resource


def _reason_text(r: ResourceImpact) -> str:
    verb = f"[{r.pacemaker_action}] " if r.pacemaker_action != r.action else ""
    return verb + (f"due to {r.reason}" if r.reason else "")


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _base_id(resource: str) -> str:
    return resource.split(":", 1)[0]  # ids are NCNames: a colon only marks a clone instance


# --- parsing (pure) ----------------------------------------------------------------------------------

def result_root(xml: bytes | str | etree._Element) -> etree._Element:
    """crm_simulate's XML result, parsed (hardened); an element is taken as it is."""
    if isinstance(xml, etree._Element):
        return xml
    data = xml.encode() if isinstance(xml, str) else xml
    return parse_xml_bytes(data, source="crm_simulate output")


def parse_simulation(xml: bytes | str | etree._Element) -> list[RscAction]:
    """The <rsc_action> elements of the transition summary, in Pacemaker's order."""
    root = result_root(xml)
    actions = root.find("actions")
    if actions is None:
        return []
    return [RscAction(action=(el.get("action") or "").lower(), resource=el.get("resource") or "",
                      node=el.get("node"), source=el.get("source"), dest=el.get("dest"),
                      role=el.get("role"), next_role=el.get("next-role"), reason=el.get("reason"),
                      blocked=el.get("blocked") == "true")
            for el in actions.iterchildren("rsc_action")]


def parse_node_actions(xml: bytes | str | etree._Element) -> list[NodeAction]:
    root = result_root(xml)
    actions = root.find("actions")
    if actions is None:
        return []
    return [NodeAction(task=el.get("task") or "", node=el.get("node") or "", reason=el.get("reason"))
            for el in actions.iterchildren("node_action")]


def resource_containers(configuration: etree._Element | None) -> dict[str, list[str]]:
    """Resource id -> its enclosing group/clone/bundle ids, innermost first (for every resource)."""
    out: dict[str, list[str]] = {}
    if configuration is None:
        return out
    resources = configuration.find("resources")
    if resources is None:
        return out

    def walk(elem: etree._Element, chain: list[str]) -> None:
        for child in elem:
            rid = child.get("id")
            if not isinstance(child.tag, str) or rid is None:
                continue
            if child.tag in ("primitive", *_CONTAINERS):
                out[rid] = list(chain)
            if child.tag in _CONTAINERS:
                walk(child, [rid, *chain])

    walk(resources, [])
    return out


def _containers_of(resource: str, known: dict[str, list[str]]) -> list[str]:
    base = _base_id(resource)
    if base in known:
        return known[base]
    # a bundle's implicit resources are named after it: "<bundle>-podman-0", "<bundle>-0", ...
    bundles = [rid for rid in known if resource.startswith(rid + "-")]
    if bundles:
        bundle = max(bundles, key=len)
        return [bundle, *known[bundle]]
    return []


def to_impact(action: RscAction, known: dict[str, list[str]]) -> ResourceImpact:
    """Pacemaker's verb -> the controller's vocabulary (restart = stop+start on one node, ...)."""
    verb = action.action
    here = action.node or action.source or action.dest
    moving = bool(action.source and action.dest and action.source != action.dest)
    nodes = [action.source or "", action.dest or ""] if moving else [here] if here else []
    mapped: Action
    if verb in ("move", "migrate") or (moving and verb in ("recover", "promote", "demote")):
        mapped = "move"  # recover/promote/demote elsewhere: the instance leaves its node
    elif verb in ("restart", "recover", "re-promote"):
        mapped = "restart"  # re-promote: demote + promote in place, the promoted role goes away
    elif verb in ("start", "stop", "reload", "promote", "demote"):
        mapped = verb  # type: ignore[assignment]
    else:
        # fail closed: an action we cannot classify must not pass the disruption policy unseen
        raise SimulationError(f"crm_simulate predicted an unknown action {verb!r} for {action.resource}")
    containers = _containers_of(action.resource, known)
    return ResourceImpact(resource=action.resource, parent=containers[0] if containers else None,
                          containers=containers, action=mapped, pacemaker_action=verb, nodes=nodes,
                          role=action.role, next_role=action.next_role, reason=action.reason,
                          blocked=action.blocked)


def subtract(proposed: Sequence[RscAction], baseline: Sequence[RscAction]) -> tuple[list[RscAction],
                                                                                     list[RscAction]]:
    """(caused by the change, would happen anyway): a multiset difference on RscAction.key()."""
    left = Counter(a.key() for a in baseline)
    caused: list[RscAction] = []
    anyway: list[RscAction] = []
    for a in proposed:
        if left[a.key()] > 0:
            left[a.key()] -= 1
            anyway.append(a)
        else:
            caused.append(a)
    return caused, anyway


def predict(proposed_xml: bytes | str | etree._Element, baseline_xml: bytes | str | etree._Element,
            known: dict[str, list[str]]) -> Impact:
    """Impact from the two crm_simulate results (pure)."""
    caused, anyway = subtract(parse_simulation(proposed_xml), parse_simulation(baseline_xml))
    base_nodes = Counter(parse_node_actions(baseline_xml))
    node_actions: list[NodeAction] = []
    for n in parse_node_actions(proposed_xml):
        if base_nodes[n] > 0:
            base_nodes[n] -= 1
        else:
            node_actions.append(n)
    return Impact(resources=[to_impact(a, known) for a in caused], node_actions=node_actions,
                  baseline=[to_impact(a, known) for a in anyway])


def simulation_cib(live_cib: etree._Element, proposed: etree._Element) -> etree._Element:
    """Proposed <configuration> + live <status>, under the live <cib> attributes with epoch bumped
    (as if the change had been written, so nothing treats it as older than the live CIB)."""
    status = live_cib.find("status")
    if live_cib.tag != "cib" or status is None:
        raise InputError("impact prediction needs the live <cib> with its <status>",
                         element=live_cib.tag)
    config = proposed if proposed.tag == "configuration" else proposed.find("configuration")
    if config is None:
        raise InputError("the proposed CIB has no <configuration>", element=proposed.tag)
    attrs = {**dict(attr_items(live_cib)),
             **CibVersion.of(live_cib, source="live CIB").next_config().as_attrs()}
    cib = etree.Element("cib", attrs)
    cib.append(copy.deepcopy(config))
    cib.append(copy.deepcopy(status))
    return cib
