"""Cross-checks between corosync.conf and the CIB that neither tool makes on its own (pure)."""

from __future__ import annotations

from lxml import etree

from controller.cib.options import cluster_option, option_enabled
from controller.corosync.lint import lint_corosync
from controller.desired.findings import Finding
from controller.desired.state import DesiredState

RESOURCE_TAGS = ("primitive", "group", "clone", "master", "bundle")

# constraint attributes that name a resource (or a tag / template grouping resources)
_REFERENCE_ATTRS = {
    "rsc_location": ("rsc",),
    "rsc_colocation": ("rsc", "with-rsc"),
    "rsc_order": ("first", "then"),
    "rsc_ticket": ("rsc",),
}


def check_quorum(state: DesiredState) -> list[Finding]:
    q = state.corosync.quorum
    file = str(state.corosync_file)
    doc = state.corosync_document()
    out: list[Finding] = []
    if q.sections > 1:
        out.append(Finding(severity="error", file=file, line=doc.root.sections("quorum")[1].line,
                           element="quorum", message="more than one quorum section"))
    if not q.providers:
        out.append(Finding(severity="error", file=file, line=q.line or None, element="quorum.provider",
                           message="no quorum provider: set quorum { provider: corosync_votequorum }"))
    elif len(q.providers) > 1:
        keys = [k for s in doc.root.sections("quorum") for k in s.key_items() if k.key == "provider"]
        out.append(Finding(severity="error", file=file, line=keys[1].line, element="quorum.provider",
                           message=f"quorum provider set {len(q.providers)} times; exactly one is allowed"))
    elif q.provider != "corosync_votequorum":
        out.append(Finding(severity="error", file=file, line=q.line or None, element="quorum.provider",
                           message=f"unknown quorum provider {q.provider!r} "
                                   "(corosync 3 has corosync_votequorum)"))
    nodes = state.corosync.nodes
    if q.expected_votes is not None and nodes:
        total = state.corosync.total_votes()
        if q.expected_votes != total:
            key = doc.find("quorum.expected_votes")
            out.append(Finding(
                severity="error", file=file, line=getattr(key, "line", None), element="quorum.expected_votes",
                message=f"expected_votes is {q.expected_votes} but the nodelist has {len(nodes)} node(s) "
                        f"with {total} vote(s) in total"))
    if q.two_node and len(nodes) != 2 and nodes:
        key = doc.find("quorum.two_node")
        out.append(Finding(severity="warning", file=file, line=getattr(key, "line", None),
                           element="quorum.two_node",
                           message=f"two_node is set but the nodelist has {len(nodes)} nodes"))
    return out


def check_nodes(state: DesiredState, config: etree._Element) -> list[Finding]:
    """Every CIB node must be a corosync node: same name, or id = corosync's node id (explicit or
    derived from the ring0 IPv4 address)."""
    coro = state.corosync
    cib_nodes = [n for n in config.iterfind("nodes/node") if n.get("type", "member") == "member"]
    if not coro.nodes:
        if cib_nodes:
            return [Finding(severity="warning", file=str(state.corosync_file), element="nodelist",
                            message="corosync.conf has no nodelist: CIB nodes cannot be checked against it")]
        return []
    names = {n.name for n in coro.nodes if n.name} | {n.ring0_addr for n in coro.nodes if n.ring0_addr}
    ids = {str(i) for i in coro.node_ids()}
    out = []
    for node in cib_nodes:
        nid, uname = node.get("id", ""), node.get("uname", "")
        if uname in names or nid in ids:
            continue
        out.append(Finding(
            severity="error", file=str(state.cib_file),
            line=state.id_lines.get(nid) or state.id_lines.get(uname),
            element=nid, message=f"CIB node {uname or nid!r} (id {nid}) is not in corosync.conf's nodelist "
                                 f"(no node named {uname!r} and none with node id {nid})"))
    return out


def _parent_tag(el: etree._Element) -> object:
    parent = el.getparent()
    return parent.tag if parent is not None else None


def check_references(state: DesiredState, config: etree._Element) -> list[Finding]:
    """Constraints, resource sets, templates and fencing levels may only name existing objects."""
    resources = {el.get("id") for tag in RESOURCE_TAGS for el in config.iter(tag)}
    templates = {el.get("id") for el in config.iter("template")}
    tags = {el.get("id") for el in config.iter("tag")}
    targets = resources | templates | tags
    out: list[Finding] = []

    def bad(el: etree._Element, owner: str | None, what: str) -> None:
        out.append(Finding(severity="error", file=str(state.cib_file), line=state.id_lines.get(owner or ""),
                           element=owner, message=what))

    for tag, attrs in _REFERENCE_ATTRS.items():
        for el in config.iter(tag):
            for attr in attrs:
                ref = el.get(attr)
                if ref is not None and ref not in targets:
                    bad(el, el.get("id", tag), f"{tag} {el.get('id')!r}: {attr}={ref!r} is not a resource")
    for member in config.iter("resource_ref"):
        if member.get("id") not in targets:
            owner = next((a.get("id") for a in member.iterancestors() if _parent_tag(a) == "constraints"),
                         None) or "resource_set"
            bad(member, owner,
                f"resource set in {owner!r} names {member.get('id')!r}, which is not a resource")
    for prim in config.iter("primitive"):
        if prim.get("template") and prim.get("template") not in templates:
            bad(prim, prim.get("id"),
                f"primitive {prim.get('id')!r} uses missing template {prim.get('template')!r}")
    for member in config.iter("obj_ref"):
        if member.get("id") not in resources | templates:
            tag_el = member.getparent()
            bad(member, tag_el.get("id") if tag_el is not None else "tag",
                f"tag names {member.get('id')!r}, which is not a resource")
    for level in config.iter("fencing-level"):
        for dev in filter(None, (level.get("devices") or "").split(",")):
            if dev not in resources:
                bad(level, level.get("id", "fencing-level"),
                    f"fencing level {level.get('id')!r} uses device {dev!r}, which is not a resource")
    return out


def check_no_quorum_policy(state: DesiredState, config: etree._Element) -> list[Finding]:
    """`no-quorum-policy=ignore` with more than two nodes: a partition that lost quorum keeps going, so
    a cut-off node fences the healthy majority (or, without fencing, runs what they run). A warning:
    the file is valid, the policy is the operator's to choose (two-node clusters have two_node)."""
    nodes = len(state.corosync.nodes) or sum(
        1 for n in config.iterfind("nodes/node") if n.get("type", "member") == "member")
    if nodes <= 2:
        return []
    out: list[Finding] = []
    fencing = option_enabled(config, "stonith-enabled", default=True)
    for opt in cluster_option(config, "no-quorum-policy"):
        if opt.value.strip().lower() != "ignore":  # Pacemaker compares the value without case
            continue
        harm = ("a node cut off from the others keeps running its resources and fences the healthy "
                "majority" if fencing else
                "a node cut off from the others keeps running resources the majority runs too (split brain)")
        when = " while its rule matches" if opt.conditional else ""
        out.append(Finding(
            severity="warning", file=str(state.cib_file),
            line=state.id_lines.get(opt.nvpair_id) or state.id_lines.get(opt.set_id), element=opt.nvpair_id,
            message=f"no-quorum-policy={opt.value} on a cluster of {nodes} nodes{when}: {harm}; use "
                    "no-quorum-policy=stop (the default) so that only the quorate partition acts"))
    return out


def check_corosync(state: DesiredState) -> list[Finding]:
    """corosync.conf on its own: unknown keys and sections (warnings), nodelist errors."""
    file = str(state.corosync_file)
    return [Finding(severity=i.severity, file=file, line=i.line, element=i.path, message=i.message)
            for i in lint_corosync(state.corosync_document())]


def cross_check(state: DesiredState) -> list[Finding]:
    config = state.configuration()
    return (check_quorum(state) + check_nodes(state, config) + check_references(state, config)
            + check_no_quorum_policy(state, config))
