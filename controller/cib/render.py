"""The human rendering of a CIB diff: one `ObjectChange` per object a user thinks in (resource,
constraint, property, rsc/op default, node, ...), with old -> new per field. JSON-able, used by
`cib diff --format text|json`, `plan` output and pull-request comments.

Fields of an object, flattened (ids left out, they are not what a reader reviews):
  `type`, `score`, ...             its own attributes
  `meta.target-role`, `params.ip`  nvpairs of meta_attributes / instance_attributes /
                                   utilization (`params[set-id].ip` when several sets)
  `op monitor 10s`                 an operation, as `k=v` of its attributes
  `members`                        group / tag / resource-set members, in order
  `rule[0]`, `set[0]`, ...         any other child, as a compact text
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from lxml import etree
from pydantic import BaseModel

from controller.cib.document import VERSION_FIELDS
from controller.cib.patchset import Patchset
from controller.cib.xml import attr_items

Action = Literal["added", "removed", "changed", "moved"]
_SET_PREFIX = {"meta_attributes": "meta", "instance_attributes": "params", "utilization": "utilization",
               "cluster_property_set": "property"}
_RESOURCES = frozenset({"primitive", "group", "clone", "master", "bundle", "template"})
_CONSTRAINTS = frozenset({"rsc_location", "rsc_colocation", "rsc_order", "rsc_ticket"})


class FieldChange(BaseModel):
    field: str
    old: str | None = None
    new: str | None = None


class ObjectChange(BaseModel):
    kind: str  # resource | constraint | property | rsc_default | op_default | node | tag | ...
    id: str
    action: Action
    details: list[FieldChange] = []


# ------------------------------------------------------------------------------- flattening


def _compact(node: etree._Element) -> str:
    """A child as one line: tag(attr=value ...){children}, ids left out."""
    if not isinstance(node.tag, str):
        return f"<!--{node.text}-->"
    attrs = " ".join(f"{k}={v}" for k, v in attr_items(node) if k != "id")
    inner = " ".join(_compact(c) for c in node if isinstance(c.tag, str))
    return f"{node.tag}({attrs})" + (f"{{{inner}}}" if inner else "")


def _nvset_fields(owner: etree._Element, out: dict[str, str], prefix_override: str | None = None) -> None:
    sets = [c for c in owner if c.tag in _SET_PREFIX]
    per_tag: dict[str, int] = {}
    for s in sets:
        per_tag[s.tag] = per_tag.get(s.tag, 0) + 1
    for s in sets:
        prefix = prefix_override or _SET_PREFIX[s.tag]
        if per_tag[s.tag] > 1:
            prefix += f"[{s.get('id') or s.get('id-ref')}]"
        if s.get("id-ref") is not None:
            out[prefix] = f"ref {s.get('id-ref')}"
        for attr in ("score", "score-attribute"):
            if s.get(attr) is not None:
                out[f"{prefix} {attr}"] = s.get(attr, "")
        for child in s:
            if child.tag == "nvpair":
                out[f"{prefix}.{child.get('name') or child.get('id-ref')}"] = child.get("value", "")
            elif isinstance(child.tag, str):
                out[f"{prefix} {child.tag}"] = _compact(child)


def _fields(node: etree._Element) -> dict[str, str]:
    out: dict[str, str] = {k: v for k, v in attr_items(node) if k != "id"}
    if node.tag == "cib":
        return {k: v for k, v in out.items() if k not in VERSION_FIELDS}
    _nvset_fields(node, out)
    ranks: dict[str, int] = {}
    members: list[str] = []
    for child in node:
        tag = child.tag
        if not isinstance(tag, str) or tag in _SET_PREFIX:
            continue
        if tag in _RESOURCES or tag in ("obj_ref", "resource_ref"):
            members.append(child.get("id", ""))
        elif tag == "operations":
            for op in child:
                if op.tag != "op":
                    continue
                name = f"op {op.get('name')} {op.get('interval', '0')}"
                if op.get("role"):
                    name += f" {op.get('role')}"
                op_fields: dict[str, str] = {}
                _nvset_fields(op, op_fields)
                value = " ".join(f"{k}={v}" for k, v in attr_items(op)
                                 if k not in ("id", "name", "interval", "role"))
                extra = " ".join(f"{k}={v}" for k, v in op_fields.items())
                out[name] = (value + (" " + extra if extra else "")).strip() or "(defaults)"
        else:
            rank = ranks.get(tag, 0)
            ranks[tag] = rank + 1
            out[f"{tag}[{rank}]"] = _compact(child)
    if members:
        out["members"] = ", ".join(members)
    return out


# -------------------------------------------------------------------------------- objects


def _path(node: etree._Element) -> str:
    steps = []
    at: etree._Element | None = node
    while at is not None:
        ident = at.get("id")
        steps.append(f"{at.tag}[@id='{ident}']" if ident is not None else at.tag)
        at = at.getparent()
    return "/" + "/".join(reversed(steps))


def _objects(cib: etree._Element) -> Iterator[tuple[tuple[str, str], etree._Element]]:
    """((kind, id), element) for every object of a CIB."""
    yield ("cib", "cib"), cib
    config = cib.find("configuration")
    if config is None:
        return
    for section, kind in (("crm_config", "property"), ("rsc_defaults", "rsc_default"),
                          ("op_defaults", "op_default")):
        for s in config.iterfind(section + "/*"):
            if not isinstance(s.tag, str):
                continue
            default_set = s.get("id") in ("cib-bootstrap-options", "rsc-options", "op-options",
                                          "rsc_defaults-options", "op_defaults-options")
            for nv in s.iterfind("nvpair"):
                name = nv.get("name") or nv.get("id-ref") or ""
                yield (kind, name if default_set else f"{s.get('id')}:{name}"), nv
            # a set's rules/score belong to the set: report it as an object of its own
            if s.get("score") is not None or s.find("rule") is not None:
                yield (kind + "_set", s.get("id", "")), s
    for node in config.iterfind("nodes/node"):
        yield ("node", node.get("uname") or node.get("id") or ""), node
    for elem in config.iterfind("resources//*"):
        if elem.tag in _RESOURCES:
            yield ("resource", elem.get("id", "")), elem
    for elem in config.iterfind("constraints/*"):
        if elem.tag in _CONSTRAINTS:
            yield ("constraint", elem.get("id", "")), elem
    for section, kind in (("tags", "tag"), ("alerts", "alert"), ("acls", "acl"),
                          ("fencing-topology", "fencing-level")):
        for elem in config.iterfind(section + "/*"):
            if isinstance(elem.tag, str):
                ident = elem.get("id", "")
                if kind == "fencing-level":
                    target = elem.get("target") or elem.get("target-pattern") or elem.get(
                        "target-attribute", "")
                    ident = f"{target} level {elem.get('index')}"
                yield (kind, ident), elem


def _details(old: dict[str, str], new: dict[str, str]) -> list[FieldChange]:
    out = [FieldChange(field=k, old=old.get(k), new=v) for k, v in new.items() if old.get(k) != v]
    out += [FieldChange(field=k, old=v, new=None) for k, v in old.items() if k not in new]
    return out


def describe(old: etree._Element, new: etree._Element, patch: Patchset | None = None) -> list[ObjectChange]:
    """Object-level changes from old to new (both <cib> roots)."""
    old_objs = dict(_objects(old))
    new_objs = dict(_objects(new))
    moved = {c.path for c in patch.changes if c.operation == "move"} if patch is not None else set()
    touched = _touched(patch) if patch is not None else set()
    changes: list[ObjectChange] = []
    for key, o in old_objs.items():
        if key not in new_objs:
            fields = _fields(o) if o.tag != "nvpair" else {"value": o.get("value", "")}
            changes.append(ObjectChange(kind=key[0], id=key[1], action="removed",
                                        details=_details(fields, {})))
    for key, n in new_objs.items():
        was = old_objs.get(key)
        is_nv = n.tag == "nvpair"
        new_fields = {"value": n.get("value", "")} if is_nv else _fields(n)
        if was is None:
            changes.append(ObjectChange(kind=key[0], id=key[1], action="added",
                                        details=_details({}, new_fields)))
            continue
        old_fields = {"value": was.get("value", "")} if is_nv else _fields(was)
        details = _details(old_fields, new_fields)
        if details:
            changes.append(ObjectChange(kind=key[0], id=key[1], action="changed", details=details))
        elif _path(n) in moved:
            changes.append(ObjectChange(kind=key[0], id=key[1], action="moved"))
        elif key[0] != "cib" and (_path(was) in touched or _path(n) in touched):
            changes.append(ObjectChange(kind=key[0], id=key[1], action="changed", details=[
                FieldChange(field="(ids or order)", old=None, new=None)]))
    if old.find("status") is not None or new.find("status") is not None:
        a, b = old.find("status"), new.find("status")
        if (a is None) != (b is None) or (a is not None and b is not None and
                                          etree.tostring(a, with_tail=False) !=
                                          etree.tostring(b, with_tail=False)):
            changes.append(ObjectChange(kind="status", id="status", action="changed"))
    return changes


def _touched(patch: Patchset) -> set[str]:
    """Paths of the objects a patch changes inside: every ancestor of a change's path, up to and
    including the nearest resource (a child resource is an object of its own)."""
    touched: set[str] = set()
    for change in patch.changes:
        if change.operation == "create" and change.node is not None and change.node.tag in _RESOURCES:
            continue  # the created resource is reported as added, its parent's `members` changed
        steps = change.path.split("/")[1:]
        for i in range(len(steps), 0, -1):
            touched.add("/" + "/".join(steps[:i]))
            if steps[i - 1].split("[", 1)[0] in _RESOURCES:
                break
    return touched


_MARK = {"added": "+", "removed": "-", "changed": "~", "moved": ">"}


def render_text(changes: list[ObjectChange]) -> str:
    """Plain text, one block per object; empty string when nothing changed."""
    lines: list[str] = []
    for ch in changes:
        lines.append(f"{_MARK[ch.action]} {ch.kind} {ch.id} ({ch.action})")
        for d in ch.details:
            if ch.action == "added":
                lines.append(f"    {d.field}: {d.new}")
            elif ch.action == "removed":
                lines.append(f"    {d.field}: {d.old}")
            elif d.old is None and d.new is None:
                lines.append(f"    {d.field}")
            else:
                old = "(unset)" if d.old is None else d.old
                new = "(unset)" if d.new is None else d.new
                lines.append(f"    {d.field}: {old} -> {new}")
    return "\n".join(lines) + ("\n" if lines else "")
