"""Id adoption for the semantic diff: desired elements that mean the same as live ones take the
live ids (and the live spelling and order where those carry no meaning).

What identifies an element (its meaning, whatever its id):
- resources, constraints, nodes, tags, alerts, ACL objects, references: their own id (a name the
  user sees and types);
- nvpair: its set plus its name;
- op: name + interval as a duration ("30s" == "30" == "30000ms") + role (Master == Promoted);
- nvset (meta_attributes, instance_attributes, utilization, cluster_property_set): its parent plus
  its kind, plus score and rule when there are several; a lone set of a kind matches the lone one;
- fencing-level: target + index; alert recipient: its value;
- anything else (operations, rule, expression, resource_set, ...): its tag and rank among
  same-tag siblings.

So a desired file written by crmsh (`IP-HA-01-monitor-20`) and a live CIB written by pcs
(`IP-HA-01-monitor-interval-20`) differ in nothing. Order carries no meaning among nvpairs, ops,
nvsets, and the children of the top-level sections; it does among group members and within
resource sets, so those keep the desired order.
"""

from __future__ import annotations

from lxml import etree

from controller.cib.durations import duration_ms, same_duration

IDENTITY_TAGS = frozenset({
    "primitive", "group", "clone", "master", "bundle", "template", "rsc_location", "rsc_colocation",
    "rsc_order", "rsc_ticket", "node", "tag", "alert", "acl_target", "acl_role", "acl_group",
    "acl_user", "resource_ref", "obj_ref", "role", "configuration", "crm_config", "nodes",
    "resources", "constraints", "rsc_defaults", "op_defaults", "tags", "alerts", "acls",
    "fencing-topology", "status"})
NVSET_TAGS = frozenset({"meta_attributes", "instance_attributes", "utilization",
                        "cluster_property_set"})
RESOURCE_TAGS = frozenset({"primitive", "group", "clone", "master", "bundle", "template"})
# Containers whose children's order means nothing.
ORDER_FREE_PARENTS = frozenset({"configuration", "crm_config", "nodes", "resources", "constraints",
                                "rsc_defaults", "op_defaults", "tags", "alerts", "acls",
                                "fencing-topology", "operations"}) | NVSET_TAGS
_ROLE_ALIASES = {"master": "promoted", "slave": "unpromoted"}
_DURATION_ATTRS = ("interval", "timeout", "start-delay")


def _role(value: str | None) -> str:
    low = (value or "").lower()
    return _ROLE_ALIASES.get(low, low)


def _rule_fingerprint(node: etree._Element) -> str:
    """A set's rules and score, ids left out."""
    parts = [node.get("score", ""), node.get("score-attribute", "")]
    for rule in node.iter("rule"):
        for elem in rule.iter():
            if isinstance(elem.tag, str):
                parts.append(elem.tag + repr(sorted((k, v) for k, v in elem.attrib.items()
                                                    if k != "id")))
    return "|".join(parts)


def _meaning(node: etree._Element) -> tuple[object, ...] | None:
    tag = node.tag
    if not isinstance(tag, str):
        return None  # comments: never matched
    if tag in IDENTITY_TAGS:
        return (tag, node.get("id"))
    if tag == "nvpair":
        name = node.get("name")
        return ("nvpair", name) if name is not None else ("nvpair-ref", node.get("id-ref"))
    if tag == "op":
        interval = node.get("interval")
        ms = duration_ms(interval)
        return ("op", node.get("name"), ms if ms is not None else interval, _role(node.get("role")))
    if tag in NVSET_TAGS:
        if node.get("id-ref") is not None:
            return (tag, "ref", node.get("id-ref"))
        return (tag, _rule_fingerprint(node))
    if tag == "fencing-level":
        return (tag, node.get("target"), node.get("target-pattern"), node.get("target-attribute"),
                node.get("target-value"), node.get("index"))
    if tag == "recipient":
        return (tag, node.get("value"))
    return (tag,)


def _match_children(live: etree._Element, desired: etree._Element) -> list[tuple[etree._Element,
                                                                                  etree._Element]]:
    """Pairs (live child, desired child) with the same meaning; ranks split equal meanings."""
    by_meaning: dict[tuple[object, ...], etree._Element] = {}
    ranks: dict[tuple[object, ...], int] = {}
    for child in live:
        meaning = _meaning(child)
        if meaning is None:
            continue
        rank = ranks.get(meaning, 0)
        ranks[meaning] = rank + 1
        by_meaning[(*meaning, rank)] = child
    pairs: list[tuple[etree._Element, etree._Element]] = []
    ranks = {}
    lone_desired: dict[str, list[etree._Element]] = {}
    used: set[etree._Element] = set()
    for child in desired:
        meaning = _meaning(child)
        if meaning is None:
            continue
        rank = ranks.get(meaning, 0)
        ranks[meaning] = rank + 1
        twin = by_meaning.get((*meaning, rank))
        if twin is not None:
            pairs.append((twin, child))
            used.add(twin)
        elif child.tag in NVSET_TAGS or child.tag not in IDENTITY_TAGS | {"nvpair", "op"}:
            lone_desired.setdefault(child.tag, []).append(child)
    # A set whose rule changed is still the same set when it is the only one of its kind left.
    if lone_desired:
        lone_live: dict[str, list[etree._Element]] = {}
        for child in live:
            if isinstance(child.tag, str) and child not in used:
                lone_live.setdefault(child.tag, []).append(child)
        for tag, nodes in lone_desired.items():
            if len(nodes) == 1 and len(lone_live.get(tag, [])) == 1:
                pairs.append((lone_live[tag][0], nodes[0]))
    return pairs


def _reorder(live: etree._Element, desired: etree._Element,
             pairs: list[tuple[etree._Element, etree._Element]]) -> None:
    """Give order-free children of desired the live order; order-bound ones keep theirs."""
    if live.tag in ORDER_FREE_PARENTS:
        def free(node: etree._Element) -> bool:
            return True
    elif live.tag in RESOURCE_TAGS:
        def free(node: etree._Element) -> bool:
            return node.tag not in RESOURCE_TAGS
    else:
        return
    twin_of = {d: lv for lv, d in pairs}
    live_pos = {lv: i for i, lv in enumerate(live)}
    kids = list(desired)
    bound = iter([k for k in kids if not free(k)])
    placed: set[etree._Element] = set()
    by_live = {twin_of[k]: k for k in kids if free(k) and k in twin_of}
    result: list[etree._Element] = []
    for lv in sorted(live_pos, key=live_pos.__getitem__):
        if lv in by_live:
            result.append(by_live[lv])
        elif isinstance(lv.tag, str) and not free(lv):
            nxt = next(bound, None)
            if nxt is not None:
                result.append(nxt)
    placed.update(result)
    result += [k for k in kids if k not in placed]
    if result != kids:
        for k in kids:
            k.tail = None
        desired[:] = result


def adopt(live: etree._Element, desired: etree._Element) -> dict[str, str]:
    """Rewrite `desired` in place: live ids, spellings and order for what means the same.

    Returns the id renames applied (desired id -> live id)."""
    renames: dict[etree._Element, str] = {}
    _walk(live, desired, renames)
    final_ids: dict[str, int] = {}
    for node in desired.iter():
        own = node.get("id")
        if isinstance(node.tag, str) and own is not None:
            ident = renames.get(node, own)
            final_ids[ident] = final_ids.get(ident, 0) + 1
    applied: dict[str, str] = {}
    for node, new_id in renames.items():
        old_id = node.get("id")
        if old_id is None or final_ids.get(new_id, 0) > 1:
            continue  # the live id is taken by another desired element: keep ours
        applied[old_id] = new_id
        node.set("id", new_id)
    if applied:
        for node in desired.iter():
            if isinstance(node.tag, str):
                ref = node.get("id-ref")
                if ref is not None and ref in applied:
                    node.set("id-ref", applied[ref])
    return applied


def _walk(live: etree._Element, desired: etree._Element, renames: dict[etree._Element, str]) -> None:
    pairs = _match_children(live, desired)
    for lv, d in pairs:
        live_id, desired_id = lv.get("id"), d.get("id")
        if (d.tag not in IDENTITY_TAGS and live_id is not None and desired_id is not None
                and live_id != desired_id):
            renames[d] = live_id
        if d.tag == "op":
            for name in _DURATION_ATTRS:
                a, b = lv.get(name), d.get(name)
                if a is not None and b is not None and a != b and same_duration(a, b):
                    d.set(name, a)
            live_role, desired_role = lv.get("role"), d.get("role")
            if live_role is not None and desired_role is not None and _role(live_role) == _role(desired_role):
                d.set("role", live_role)
        _walk(lv, d, renames)
    _reorder(live, desired, pairs)
