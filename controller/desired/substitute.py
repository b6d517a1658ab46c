"""Resource substitution: run a desired configuration where some of its agents cannot run.

In the sandbox, nodes are namespaces without systemd, so `systemd:` resources cannot start; a
substitution maps them to an agent that can (ocf:pacemaker:Dummy), in the effective desired state only,
never in the desired files. Every substitution is reported (plan, status, audit) so nobody mistakes the
sandbox for production. Fencing needs none: the sandbox swaps the external/ssh plugin itself.
"""

from __future__ import annotations

import copy
import fnmatch

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field


class Substitution(BaseModel):
    """`[[substitute]]` in agent.toml: primitives whose agent matches are run as another agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match_class: str = Field(description="resource class to replace, e.g. systemd")
    match_type: str = Field(default="*", description="agent type glob, e.g. kamailio or *")
    to_class: str = Field(default="ocf")
    to_provider: str | None = Field(default="pacemaker")
    to_type: str = Field(default="Dummy")
    keep_params: bool = Field(default=False, description="keep instance attributes (the new agent must "
                              "accept them)")
    reason: str = ""


class Substituted(BaseModel):
    resource: str
    original: str
    replacement: str
    reason: str


def agent_name(cls: str | None, provider: str | None, type_: str | None) -> str:
    return ":".join(p for p in (cls, provider, type_) if p)


def substitute(cib: etree._Element, rules: list[Substitution]) -> tuple[etree._Element, list[Substituted]]:
    """A copy of `cib` with matching primitives replaced, and the list of what was replaced."""
    if not rules:
        return cib, []
    out = copy.deepcopy(cib)
    done: list[Substituted] = []
    for prim in out.iter("primitive"):
        cls, typ = prim.get("class"), prim.get("type")
        for rule in rules:
            if cls == rule.match_class and typ is not None and fnmatch.fnmatchcase(typ, rule.match_type):
                original = agent_name(cls, prim.get("provider"), typ)
                prim.set("class", rule.to_class)
                if rule.to_provider:
                    prim.set("provider", rule.to_provider)
                else:
                    prim.attrib.pop("provider", "")
                prim.set("type", rule.to_type)
                if not rule.keep_params:
                    for ia in prim.findall("instance_attributes"):
                        prim.remove(ia)
                done.append(Substituted(resource=prim.get("id", ""), original=original,
                                        replacement=agent_name(rule.to_class, rule.to_provider, rule.to_type),
                                        reason=rule.reason))
                break
    return out, done


SANDBOX_SUBSTITUTIONS = [
    Substitution(match_class="systemd", match_type="*",
                 reason="sandbox nodes are namespaces without systemd"),
]
