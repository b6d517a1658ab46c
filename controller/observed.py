"""The observed cluster: typed views of what crm_mon and corosync-quorumtool report, and the pure parsers
that build them from the tools' text (the tools themselves are run by controller/cluster/)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from controller.cib.xml import parse_xml_bytes

_OP_KEY = re.compile(r"^(?P<rsc>.+?)_(?P<task>migrate_to|migrate_from|[^_]+)_(?P<interval>\d+)$")


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def _bool(value: str | None) -> bool:
    return value == "true"


class NodeState(BaseModel):
    name: str
    id: str
    online: bool
    standby: bool
    standby_onfail: bool = False
    maintenance: bool = False
    pending: bool = False
    unclean: bool = False
    shutdown: bool = False
    is_dc: bool = False
    resources_running: int = 0


class ResourceState(BaseModel):
    id: str
    agent: str
    role: str
    target_role: str | None = None
    active: bool
    managed: bool = True
    failed: bool = False
    orphaned: bool = False
    blocked: bool = False
    nodes: list[str] = Field(default_factory=list)
    parent: str | None = None  # the group, clone or bundle it belongs to


class FailedAction(BaseModel):
    op_key: str
    node: str
    exitstatus: str | None = None
    exitreason: str | None = None
    exitcode: int | None = None
    status: str | None = None
    call: int | None = None
    last_rc_change: str | None = None

    @property
    def resource(self) -> str:
        """The resource of the operation key "<rsc>_<task>_<interval-ms>" (Pacemaker's parse_op_key,
        lib/common/actions.c: the interval after the last underscore, the task before it; migrate_to and
        migrate_from are the tasks that contain one)."""
        m = _OP_KEY.match(self.op_key)
        return m.group("rsc") if m else self.op_key


class ClusterStatus(BaseModel):
    dc: str | None
    quorate: bool
    nodes: list[NodeState]
    resources: list[ResourceState]
    failed_actions: list[FailedAction]
    stack: str | None = None

    def node(self, name: str) -> NodeState | None:
        return next((n for n in self.nodes if n.name == name), None)

    def resource(self, rid: str) -> ResourceState | None:
        return next((r for r in self.resources if r.id == rid), None)

    def resources_on(self, node: str) -> list[ResourceState]:
        return [r for r in self.resources if node in r.nodes]


def parse_crm_mon(xml: str | bytes) -> ClusterStatus:
    """`crm_mon --output-as=xml` (Pacemaker 2.1) into a ClusterStatus."""
    data = xml.encode() if isinstance(xml, str) else xml
    root = parse_xml_bytes(data, source="crm_mon output")
    summary = root.find("summary")
    dc_el = summary.find("current_dc") if summary is not None else None
    dc = dc_el.get("name") if dc_el is not None and _bool(dc_el.get("present")) else None
    quorate = dc_el is not None and _bool(dc_el.get("with_quorum"))
    stack_el = summary.find("stack") if summary is not None else None

    nodes = [
        NodeState(name=n.get("name", ""), id=n.get("id", ""), online=_bool(n.get("online")),
                  standby=_bool(n.get("standby")), standby_onfail=_bool(n.get("standby_onfail")),
                  maintenance=_bool(n.get("maintenance")), pending=_bool(n.get("pending")),
                  unclean=_bool(n.get("unclean")), shutdown=_bool(n.get("shutdown")),
                  is_dc=_bool(n.get("is_dc")), resources_running=int(n.get("resources_running", "0")))
        for n in root.iterfind("nodes/node")
    ]

    resources: list[ResourceState] = []
    res_root = root.find("resources")
    if res_root is not None:
        for el in res_root.iter("resource"):
            parent = el.getparent()
            parent_id = parent.get("id") if parent is not None and parent.tag in ("group", "clone", "bundle",
                                                                                  "replica") else None
            if parent is not None and parent.tag == "group":
                grand = parent.getparent()
                if grand is not None and grand.tag == "clone":
                    parent_id = grand.get("id")
            if parent is not None and parent.tag == "replica":
                bundle = parent.getparent()
                parent_id = bundle.get("id") if bundle is not None else parent_id
            resources.append(ResourceState(
                id=el.get("id", ""), agent=el.get("resource_agent", ""), role=el.get("role", ""),
                target_role=el.get("target_role"), active=_bool(el.get("active")),
                managed=_bool(el.get("managed", "true")), failed=_bool(el.get("failed")),
                orphaned=_bool(el.get("orphaned")), blocked=_bool(el.get("blocked")),
                nodes=[n.get("name", "") for n in el.iterfind("node")], parent=parent_id))

    failed = [
        FailedAction(op_key=f.get("op_key", ""), node=f.get("node", ""), exitstatus=f.get("exitstatus"),
                     exitreason=f.get("exitreason"),
                     exitcode=_int(f.get("exitcode")),
                     status=f.get("status"), call=_int(f.get("call")),
                     last_rc_change=f.get("last-rc-change"))
        for f in root.iterfind("failures/failure")
    ]
    return ClusterStatus(dc=dc, quorate=quorate, nodes=nodes, resources=resources, failed_actions=failed,
                         stack=stack_el.get("type") if stack_el is not None else None)


class QuorumMember(BaseModel):
    nodeid: int
    votes: int
    name: str
    local: bool = False


class QuorumInfo(BaseModel):
    quorate: bool
    node_id: int | None = None
    expected_votes: int | None = None
    highest_expected: int | None = None
    total_votes: int | None = None
    quorum: int | None = None
    flags: list[str] = Field(default_factory=list)
    members: list[QuorumMember] = Field(default_factory=list)


_KV = re.compile(r"^([A-Za-z][A-Za-z ]*?):\s+(.*)$")


def parse_quorumtool(text: str) -> QuorumInfo:
    """`corosync-quorumtool -s` (Corosync 3), the votequorum view of this node."""
    fields: dict[str, str] = {}
    members: list[QuorumMember] = []
    in_members = False
    for line in text.splitlines():
        if line.strip().startswith("Nodeid"):
            in_members = True
            continue
        if in_members:
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                members.append(QuorumMember(nodeid=int(parts[0]), votes=int(parts[1]), name=parts[2],
                                            local="(local)" in line))
            continue
        m = _KV.match(line.strip())
        if m:
            fields[m.group(1)] = m.group(2).strip()

    def num(key: str) -> int | None:
        v = fields.get(key, "").split()
        return int(v[0]) if v and v[0].isdigit() else None

    return QuorumInfo(quorate=fields.get("Quorate", "").startswith("Yes"), node_id=num("Node ID"),
                      expected_votes=num("Expected votes"), highest_expected=num("Highest expected"),
                      total_votes=num("Total votes"), quorum=num("Quorum"),
                      flags=fields.get("Flags", "").split(), members=members)
