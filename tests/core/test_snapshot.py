"""The snapshot format and the read-only cluster over it, without a cluster: what `plan --live FILE` reads
is what the node answered, agents are checked against the node's list, and nothing can be written.
The same plan on and off a real cluster: tests/agent/test_plan_offline_on_sandbox.py."""

from __future__ import annotations

import json

import pytest

from controller.cib.marker import Marker
from controller.cluster.agents import SnapshotAgentCatalog
from controller.cluster.cib_writer import QUORUM_ONLY, write_configuration, write_marker_only
from controller.cluster.snapshot import OffCluster, SnapshotCluster
from controller.desired.agents import check_agents
from controller.errors import InputError
from controller.snapshot import Snapshot, SnapshotAgents, SnapshotSettings, parse_snapshot

CIB = ('<cib admin_epoch="0" epoch="42" num_updates="7" have-quorum="1" dc-uuid="1">'
       '<configuration><crm_config/><nodes><node id="1" uname="kamailio01"/></nodes><resources/>'
       '<constraints/></configuration><status><node_state id="1" uname="kamailio01"/></status></cib>')
CRM_MON = ('<pacemaker-result api-version="2.3" request="crm_mon"><summary><stack type="corosync"/>'
           '<current_dc present="true" name="kamailio01" id="1" with_quorum="true"/></summary>'
           '<nodes><node name="kamailio01" id="1" online="true" is_dc="true"/></nodes></pacemaker-result>')
QUORUM = "Quorum information\n------------------\nNode ID:          1\nQuorate:          Yes\n" \
         "Expected votes:   3\n"
AGENTS = SnapshotAgents(standards=["ocf", "lsb", "service", "stonith"],
                        ocf={"heartbeat": ["IPaddr2"], "pacemaker": ["Dummy"]}, lsb=["corosync"],
                        stonith=["external/ssh", "fence_xvm"], systemd=None)
CONF = "totem {\n\tversion: 2\n\ttoken: 3000\n}\n"


def snapshot(**kw: object) -> Snapshot:
    fields: dict[str, object] = {
        "node": "kamailio01", "cib": CIB, "crm_mon": CRM_MON, "quorum": QUORUM, "corosync_conf": CONF,
        "agents": AGENTS, "cmap": {"runtime.config.totem.token": "3000"},
        "settings": SnapshotSettings(node_name="kamailio01")}
    return Snapshot(**{**fields, **kw})  # type: ignore[arg-type]


def test_a_snapshot_reads_back_as_written() -> None:
    snap = snapshot()
    again = parse_snapshot(snap.dump())
    assert again == snap
    data = json.loads(snap.dump())
    assert (data["kind"], data["format"], data["node"]) == ("ha-gitops-snapshot", 1, "kamailio01")


def test_another_format_is_refused_by_name() -> None:
    data = json.loads(snapshot().dump())
    data["format"] = 2
    with pytest.raises(InputError, match=r"format.*reads ha-gitops-snapshot format 1"):
        parse_snapshot(json.dumps(data), source="snap.json")
    with pytest.raises(InputError, match="not an ha-gitops snapshot"):
        parse_snapshot('{"format": 1}')


def test_the_cluster_over_a_snapshot_answers_as_the_node_did() -> None:
    c = SnapshotCluster(snapshot())
    cib = c.read_cib()
    assert cib.get("epoch") == "42" and cib.find("status/node_state") is not None  # status kept
    cib.set("epoch", "99")  # a caller's copy: the snapshot stays as taken
    assert c.read_cib().get("epoch") == "42"
    assert c.read_cib_head().get("dc-uuid") == "1" and len(c.read_cib_head()) == 0
    assert c.read_cib("status").tag == "status"
    st = c.status()
    assert (st.dc, st.quorate) == ("kamailio01", True)
    q = c.quorum()
    assert (q.quorate, q.node_id, q.expected_votes) == (True, 1, 3)
    lead = c.leadership()
    assert lead.has_quorum and lead.is_dc
    assert c.read_file("/etc/corosync/corosync.conf") == CONF
    assert c.cmap_get("runtime.config.totem.token") == "3000" and c.cmap_get("totem.token") is None
    with pytest.raises(OffCluster, match=r"holds /etc/corosync/corosync\.conf only"):
        c.read_file("/etc/passwd")


def test_nothing_can_be_written_through_a_snapshot() -> None:
    c = SnapshotCluster(snapshot())
    from lxml import etree

    wanted = c.read_cib()
    etree.SubElement(wanted.find("configuration/resources"), "primitive",
                     {"id": "extra", "class": "ocf", "provider": "pacemaker", "type": "Dummy"})
    with pytest.raises(OffCluster, match="patching the CIB needs the cluster; the snapshot of kamailio01"):
        write_configuration(c, wanted, marker=lambda m: m, guard=QUORUM_ONLY)
    with pytest.raises(OffCluster):
        write_marker_only(c, lambda m: Marker(revision="abc"), guard=QUORUM_ONLY)
    for act in (lambda: c.set_epoch(50), lambda: c.reload_corosync(), lambda: c.set_expected_votes(3),
                lambda: c.set_standby("kamailio01", True), lambda: c.restart_stack(["systemctl"]),
                lambda: c.set_node_attribute("kamailio01", "x", "1"), lambda: c.wait_settled(5)):
        with pytest.raises(OffCluster):
            act()
    # Nor through its runner: only the tools that read what they are given run off the cluster.
    for argv in (["cibadmin", "--patch", "--xml-pipe"], ["crm_attribute", "-n", "x", "-v", "1"],
                 ["corosync-cfgtool", "-R"], ["corosync", "-f"], ["stonith_admin", "--history", "*"]):
        with pytest.raises(OffCluster, match="needs the cluster"):
            c.runner.run(argv, timeout=5)


def test_agents_are_the_nodes_whatever_this_machine_has() -> None:
    cat = SnapshotAgentCatalog(AGENTS)
    assert cat.exists("ocf", "heartbeat", "IPaddr2") is True
    assert cat.exists("ocf", "pacemaker", "IPaddr2") is False  # another provider
    assert cat.exists("ocf", "heartbeat", "NoSuchAgent") is False
    assert cat.exists("stonith", None, "external/ssh") is True
    assert cat.exists("stonith", None, "fence_nope") is False
    assert cat.exists("lsb", None, "corosync") is True
    assert cat.exists("service", None, "corosync") is True  # no systemd there: service is lsb
    assert cat.exists("upstart", None, "x") is False  # a standard the node does not offer
    # systemd not PID 1 on the node: unknown, with the reason the node itself gives
    assert cat.exists("systemd", None, "kamailio") is None
    assert "no systemd class" in cat.why_unknown("systemd", None, "kamailio")
    with_systemd = SnapshotAgentCatalog(AGENTS.model_copy(update={
        "standards": [*AGENTS.standards, "systemd"], "systemd": ["kamailio"]}))
    assert with_systemd.exists("systemd", None, "kamailio") is True
    assert with_systemd.exists("systemd", None, "kamailio.service") is True
    assert with_systemd.exists("systemd", None, "asterisk") is False


def test_a_missing_agent_is_an_error_off_the_cluster_too() -> None:
    from lxml import etree

    conf = etree.fromstring(
        '<configuration><resources><primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"/>'
        '<primitive id="odd" class="ocf" provider="heartbeat" type="NoSuchAgent"/>'
        '</resources></configuration>')
    findings = check_agents(conf, SnapshotAgentCatalog(AGENTS), file="cib.xml", id_lines={})
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 1 and "NoSuchAgent" in errors[0].message and "odd" in errors[0].message
