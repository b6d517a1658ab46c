"""The ha-gitops marker: a cluster_property_set in the CIB that records what the controller did.

Every agent reads it from its own node's CIB, so the cluster's replicated configuration store doubles as
the agents' shared state (no extra database or election): which revision is applied, by which node,
which event, and the operator's suspend/pin switches. The user's desired files never manage it: the
semantic diff ignores it (MARKER_RULE), and it changes only in the same atomic patch as a real change,
or through `ha-gitops suspend|resume|rollback`.
"""

from __future__ import annotations

import copy

from lxml import etree
from pydantic import BaseModel

from controller.cib.normalize import IgnoreRule

MARKER_SET_ID = "ha-gitops"
PREFIX = "ha-gitops-"
MARKER_RULE = IgnoreRule(xpath=f"configuration/crm_config/cluster_property_set[@id='{MARKER_SET_ID}']",
                         reason="written by ha-gitops itself")
# The corosync.conf rollout's node attributes (controller/rollout.py): agents' state, not configuration.
NODE_ATTR_RULE = IgnoreRule(
    xpath=f"configuration/nodes/node/instance_attributes/nvpair[starts-with(@name, '{PREFIX}')]",
    reason="ha-gitops rollout state (node attributes)")
OWN_RULES = (MARKER_RULE, NODE_ATTR_RULE)


class Marker(BaseModel):
    revision: str | None = None      # git sha of the desired state last applied
    digest: str | None = None        # of the effective desired configuration written: a live change
                                     # while git still says the same is drift, not a new revision
    event: str | None = None         # uuid of the audit event of that write (observers record it once)
    kind: str | None = None          # apply | drift-corrected | rollback | auto-rollback
    applied_by: str | None = None    # node whose agent (or CLI) wrote it
    applied_at: str | None = None    # ISO time
    suspended: bool = False          # `ha-gitops suspend`: agents observe but do not write
    pinned: str | None = None        # sha rolled back from: not applied again until a newer commit
    bad: str | None = None           # sha that left the cluster unhealthy and was rolled back automatically
    corosync_bad: str | None = None  # revision whose corosync.conf rollout failed verify and was rolled back

    def nvpairs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None or value is False:
                continue
            out[PREFIX + name.replace("_", "-")] = "true" if value is True else str(value)
        return out


def read_marker(cib: etree._Element) -> Marker:
    values: dict[str, object] = {}
    # Values are written by us (nvpairs()), and read back the same way.
    for nv in cib.iterfind(f"configuration/crm_config/cluster_property_set[@id='{MARKER_SET_ID}']/nvpair"):
        name = nv.get("name", "")
        if name.startswith(PREFIX):
            values[name[len(PREFIX):].replace("-", "_")] = nv.get("value")
    if "suspended" in values:
        values["suspended"] = values["suspended"] == "true"
    return Marker.model_validate({k: v for k, v in values.items() if k in Marker.model_fields})


def with_marker(cib: etree._Element, marker: Marker) -> etree._Element:
    """A copy of `cib` whose marker set holds exactly `marker`."""
    out = copy.deepcopy(cib)
    crm_config = out.find("configuration/crm_config")
    if crm_config is None:
        configuration = out.find("configuration")
        if configuration is None:
            configuration = etree.SubElement(out, "configuration")
        crm_config = etree.Element("crm_config")
        configuration.insert(0, crm_config)
    for old in crm_config.findall(f"cluster_property_set[@id='{MARKER_SET_ID}']"):
        crm_config.remove(old)
    pairs = marker.nvpairs()
    if pairs:
        pset = etree.SubElement(crm_config, "cluster_property_set", id=MARKER_SET_ID)
        for name, value in pairs.items():
            etree.SubElement(pset, "nvpair", id=f"{MARKER_SET_ID}-{name}", name=name, value=value)
    return out
