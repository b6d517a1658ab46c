"""Small, pure edits of a CIB tree that the controller makes on its own account."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from lxml import etree


def with_target_role(cib: etree._Element, resource_ids: Iterable[str], role: str) -> etree._Element:
    """A copy of `cib` whose named resources carry meta target-role=`role` (what `pcs resource disable`
    and `crm resource stop` write)."""
    out = copy.deepcopy(cib)
    resources = out.find("configuration/resources")
    for rid in resource_ids:
        el = resources.find(f".//*[@id='{rid}']") if resources is not None else None
        if el is None:
            continue
        meta = el.find("meta_attributes")
        if meta is None:
            meta = etree.Element("meta_attributes", id=f"{rid}-meta_attributes")
            el.insert(0, meta)
        nv = meta.find("nvpair[@name='target-role']")
        if nv is None:
            nv = etree.SubElement(meta, "nvpair", id=f"{meta.get('id')}-target-role", name="target-role")
        nv.set("value", role)
    return out
