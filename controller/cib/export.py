"""`ha-gitops export` (pure): the live CIB as a desired configuration, what the cluster writes left out.

What is left out is exactly what the semantic diff never counts (one definition each): the <cib>
attributes and crm_config properties in controller/cib/normalize.py (MANAGED_CIB_ATTRIBUTES,
MANAGED_PROPERTIES, MANAGED_IF_UNSET_PROPERTIES: the DC fills cluster-name in from corosync.conf), the
ha-gitops marker and rollout node attributes (controller/cib/marker.py OWN_RULES), and the <status>
section. So `plan` on the exported folder right after sees no difference.

Also here: which parameters look like secrets kept in clear text, and the commented cluster.toml
skeleton.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from lxml import etree
from pydantic import BaseModel

from controller.cib.adopt import NVSET_TAGS, RESOURCE_TAGS
from controller.cib.marker import OWN_RULES
from controller.cib.normalize import (
    MANAGED_CIB_ATTRIBUTES,
    MANAGED_IF_UNSET_PROPERTIES,
    MANAGED_PROPERTIES,
)


class SecretHint(BaseModel):
    """A parameter whose name looks like a secret, stored in the CIB in clear text."""

    element: str  # the id of the resource (or other element) it belongs to
    name: str

    def text(self) -> str:
        return f"{self.element}: parameter {self.name} looks like a secret kept in clear text"


def strip_managed(live: etree._Element) -> etree._Element:
    """A copy of the live <cib> without what the cluster or ha-gitops writes itself (and no <status>)."""
    cib = copy.deepcopy(live)
    for status in cib.findall("status"):
        cib.remove(status)
    for name in MANAGED_CIB_ATTRIBUTES:
        cib.attrib.pop(name, "")
    managed = {*MANAGED_PROPERTIES, *MANAGED_IF_UNSET_PROPERTIES}
    emptied: set[etree._Element] = set()
    for nv in list(cib.iterfind("configuration/crm_config/cluster_property_set/nvpair")):
        if nv.get("name") in managed:
            emptied.add(_drop(nv))
    for rule in OWN_RULES:
        for el in rule.select(cib, side="live"):
            emptied.add(_drop(el))
    # A set left empty by the above says nothing (crmsh would print `property cib-bootstrap-options:`);
    # the diff keeps the live set around the managed values it leaves alone.
    for parent in emptied:
        if parent.tag in NVSET_TAGS and not any(isinstance(c.tag, str) for c in parent) \
                and parent.get("id-ref") is None and parent.getparent() is not None:
            _drop(parent)
    return cib


def _drop(el: etree._Element) -> etree._Element:
    parent = el.getparent()
    assert parent is not None
    parent.remove(el)
    return parent


def configuration_only(cib: etree._Element) -> etree._Element:
    """The <configuration> of a stripped <cib> (what `cib.xml` holds)."""
    found = cib.find("configuration")
    if found is None:
        raise ValueError("the CIB has no <configuration>")
    return copy.deepcopy(found)


def secret_hints(cib: etree._Element, is_secret_name: Callable[[str], bool]) -> list[SecretHint]:
    """Clear-text values under secret-looking names (a `password=`, `secret`, `*_key`): the caller passes
    the audit trail's own test (controller.audit.masking.is_secret_name; the core imports no audit)."""
    hints: list[SecretHint] = []
    for nv in cib.iter("nvpair"):
        name, value = nv.get("name") or "", nv.get("value")
        if not value or not is_secret_name(name):
            continue
        owner = nv.getparent()
        while owner is not None and owner.get("id") is not None and owner.tag in NVSET_TAGS:
            owner = owner.getparent()
        element = (owner.get("id") if owner is not None else None) or (nv.get("id") or "?")
        hints.append(SecretHint(element=element, name=name))
    return hints


def cluster_toml_skeleton(cib: etree._Element) -> str:
    """A commented cluster.toml for this cluster: every key of the policy, all commented out (as written
    it sets nothing); `protect` lists the cluster's top-level resources as an example."""
    resources = cib.find("configuration/resources")
    top = [r.get("id", "") for r in (resources if resources is not None else [])
           if isinstance(r.tag, str) and r.tag in RESOURCE_TAGS and r.tag != "template"]
    protect = "[" + ", ".join(f'"{r}"' for r in top) + "]"
    return f"""\
# cluster.toml: the policy of this cluster for ha-gitops (written by `ha-gitops export`).
# Everything is commented out: as it stands the file sets no policy and the defaults apply.
# Uncomment what you want; `ha-gitops validate` checks it (an unknown key is an error).

# Differences the agents leave alone (live wins), repeatable:
# [[ignore]]
# xpath = "//nvpair[@name='target-role']"   # XPath 1.0 relative to /cib
# attribute = "value"                       # optional: only this attribute of what xpath selects
# reason = "operators stop resources by hand during incidents"

# When disruptive changes are allowed at all (inside a window every change is), repeatable:
# [[maintenance_window]]
# name = "nightly"
# cron = "0 2 * * *"        # start times, standard 5-field cron
# duration = "2h"
# timezone = "UTC"

# [disruption]              # outside a maintenance window
# max_restarts = 1          # restarts + moves + stops per change (absent: no limit)
# max_deletions = 0         # resources removed per change (absent: no limit)
# protect = {protect}
# allow_fencing = false     # a change predicted to fence a node
# allow_cluster_restart = false   # corosync.conf changes that need the whole cluster restarted

# [settle]
# timeout = "120s"          # how long verify waits for the cluster to settle after an apply

# [rollout]                 # corosync.conf rollouts
# verify_timeout = "30s"    # after a reload, until every node's runtime values match
# rejoin_timeout = "90s"    # after a restart, until the node is back in a quorate cluster
"""


def secret_name_for(resource: str, param: str) -> str:
    """The secrets.age name `export --move-secrets` gives a parameter: <resource>_<param>, made a name."""
    import re

    raw = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{resource}_{param}").lstrip(".-") or "secret"
    return raw[:64]


def move_secrets(cib: etree._Element, is_secret_name: Callable[[str], bool]) -> dict[str, str]:
    """Replace every clear-text secret-looking parameter of a primitive's instance attributes in `cib`
    (in place) with `@secret:NAME`; return {NAME: value} for secrets.age. Others (meta attributes, a
    fence level) stay: Pacemaker's local store holds resource parameters only."""
    from controller.secrets.model import REFERENCE_PREFIX, parse_reference

    moved: dict[str, str] = {}
    for nv in cib.iter("nvpair"):
        name, value = nv.get("name") or "", nv.get("value")
        parent = nv.getparent()
        rsc = parent.getparent() if parent is not None else None
        if not value or value == "lrm://" or parse_reference(value) is not None or not is_secret_name(name) \
                or parent is None or parent.tag != "instance_attributes" or rsc is None \
                or rsc.tag != "primitive" or not rsc.get("id"):
            continue
        secret = secret_name_for(rsc.get("id", ""), name)
        moved[secret] = value
        nv.set("value", REFERENCE_PREFIX + secret)
    return moved
