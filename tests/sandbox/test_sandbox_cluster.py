"""The sandbox is a real cluster: quorum, DC, fencing by the sandbox power switch, failure detection."""

from __future__ import annotations

import json
import re

import pytest

from controller.sandbox.manager import Sandbox
from tests.conftest import REFERENCE
from tests.helpers import HA_GITOPS, wait_for

pytestmark = pytest.mark.sandbox

NODES = ["kamailio01", "kamailio02", "kamailio03"]


def test_reference_cluster_is_quorate_with_a_dc(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    status = sb.cluster("kamailio01").status()
    assert status.quorate
    assert status.dc in NODES
    assert sorted(n.name for n in status.nodes if n.online) == NODES
    # Node ids are the corosync addresses as integers, as corosync derives them without `nodeid`.
    assert {n.name: n.id for n in status.nodes} == {
        "kamailio01": "182190357", "kamailio02": "182190358", "kamailio03": "182190359"}
    for node in NODES:
        q = sb.cluster(node).quorum()
        assert q.quorate and q.expected_votes == 3 and q.total_votes == 3 and q.quorum == 2
        assert sb.exec(node, ["hostname"]).stdout.strip() == node
        assert sb.cluster(node).cmap_get("totem.cluster_name") == "kamailio"


def test_nodes_are_isolated_from_the_host_network(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    routes = sb.exec("kamailio01", ["ip", "route", "show"]).stdout
    assert "default" not in routes
    assert "10.220.1.0/24" in routes
    # Nodes reach each other over the sandbox bridge.
    assert sb.exec("kamailio01", ["ping", "-c1", "-W2", "10.220.1.22"]).returncode == 0


def test_adapter_models_match_crm_mon_and_other_tools(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    sb.exec("kamailio01", ["cibadmin", "--create", "-o", "resources", "--xml-text",
                           '<primitive id="probe-dummy" class="ocf" provider="heartbeat" type="Dummy"/>'],
            check=True)
    sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "stonith-enabled", "-v", "false"],
            check=True)
    sb.exec("kamailio01", ["crm_attribute", "-t", "nodes", "-N", "kamailio03", "-n", "standby", "-v", "on"],
            check=True)
    try:
        cluster = sb.cluster("kamailio02")
        # active is true from Starting on: wait for the start to have finished.
        st = wait_for(lambda: s if (r := (s := cluster.status()).resource("probe-dummy"))
                      and r.role == "Started" else None, 30, "probe-dummy started")
        text = sb.exec("kamailio02", ["crm_mon", "-1"]).stdout
        assert f"Current DC: {st.dc} " in text
        assert "partition with quorum" in text and st.quorate
        node3 = st.node("kamailio03")
        assert node3 is not None and node3.standby
        assert re.search(r"Node kamailio03: standby", text)
        located = sb.exec("kamailio02", ["crm_resource", "--locate", "-r", "probe-dummy"]).stdout
        rsc = st.resource("probe-dummy")
        assert rsc is not None and rsc.role == "Started" and rsc.agent == "ocf:heartbeat:Dummy"
        assert f"is running on: {rsc.nodes[0]}" in located
        assert rsc.nodes[0] != "kamailio03"  # standby nodes run nothing
        listed = sb.exec("kamailio02", ["crm_node", "-l"]).stdout.split("\n")
        assert sorted(line.split()[1] for line in listed if line.strip()) == sorted(n.name for n in st.nodes)
    finally:
        sb.exec("kamailio01", ["crm_attribute", "-t", "nodes", "-N", "kamailio03", "-n", "standby",
                               "-D"])
        sb.exec("kamailio01", ["cibadmin", "--delete", "-o", "resources", "--xml-text",
                               '<primitive id="probe-dummy"/>'])


def test_failed_action_is_reported(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "stonith-enabled", "-v", "false"],
            check=True)
    # Dummy with a state file in a directory that does not exist: its start fails, for real.
    sb.exec("kamailio01", ["cibadmin", "--create", "-o", "resources", "--xml-text",
                           '<primitive id="broken-dummy" class="ocf" provider="heartbeat" type="Dummy">'
                           '<instance_attributes id="bd-ia"><nvpair id="bd-ia-s" name="state" '
                           'value="/nonexistent/dir/state"/></instance_attributes>'
                           '<meta_attributes id="bd-ma"><nvpair id="bd-ma-t" name="migration-threshold" '
                           'value="1"/></meta_attributes></primitive>'], check=True)
    try:
        cluster = sb.cluster("kamailio01")
        st = wait_for(lambda: s if (s := cluster.status()).failed_actions else None, 60, "a failed action")
        fa = [f for f in st.failed_actions if f.op_key.startswith("broken-dummy_")]
        assert fa and fa[0].node in NODES
        text = sb.exec("kamailio01", ["crm_mon", "-1"]).stdout
        assert "Failed Resource Actions" in text and "broken-dummy" in text
    finally:
        sb.exec("kamailio01", ["cibadmin", "--delete", "-o", "resources", "--xml-text",
                               '<primitive id="broken-dummy"/>'])
        sb.exec("kamailio01", ["crm_resource", "--cleanup", "-r", "broken-dummy"])


def test_killed_corosync_is_detected_and_node_recovers(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    sb.kill("kamailio02", "corosync")
    cluster = sb.cluster("kamailio01")
    st = wait_for(lambda: s if (s := cluster.status()).node("kamailio02") and not s.node("kamailio02").online
                  else None, 30, "kamailio02 seen offline")
    assert st.quorate  # two of three votes remain
    q = cluster.quorum()
    assert q.total_votes == 2 and q.quorate
    sb.start("kamailio02")
    sb.wait_healthy(timeout=60, expect_online=NODES)


def test_cut_node_is_fenced_by_the_sandbox_power_switch_and_rejoins(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    fence = ('<clone id="fencing"><primitive id="stonithssh" class="stonith" type="external/ssh">'
             '<instance_attributes id="stonithssh-ia"><nvpair id="stonithssh-ia-h" name="hostlist" '
             'value="kamailio01 kamailio02 kamailio03"/></instance_attributes></primitive></clone>')
    sb.exec("kamailio01", ["cibadmin", "--create", "-o", "resources", "--xml-text", fence], check=True)
    sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "stonith-enabled", "-v", "true"],
            check=True)
    try:
        cluster = sb.cluster("kamailio01")
        wait_for(lambda: (r := cluster.status().resources) and sum(
            1 for x in r if x.id.startswith("stonithssh") and x.active) == 3, 30, "fencing clone started")
        pid_before = sb.init_pid("kamailio02")
        sb.cut("kamailio02")
        # The survivors fence kamailio02 through stonith:external/ssh, which in the sandbox is the power
        # switch: the node's processes are all killed and it boots again (a new PID 1).
        wait_for(lambda: sb.request("status")["nodes"]["kamailio02"]["init_pid"] not in (None, pid_before),
                 60, "kamailio02 rebooted by fencing")
        history = sb.exec("kamailio01", ["stonith_admin", "--history", "kamailio02"]).stdout
        assert re.search(r"reboot of kamailio02 successful", history), history
        sb.heal("kamailio02")
        sb.wait_healthy(timeout=90, expect_online=NODES)
    finally:
        sb.heal("kamailio02")
        sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "stonith-enabled", "-v", "false"])
        sb.exec("kamailio01", ["cibadmin", "--delete", "-o", "resources", "--xml-text",
                               '<clone id="fencing"/>'])


def test_poweroff_and_start(whole_sandbox: Sandbox) -> None:
    sb = whole_sandbox
    sb.poweroff("kamailio03")
    with pytest.raises(Exception, match="powered off"):
        sb.init_pid("kamailio03")
    cluster = sb.cluster("kamailio01")
    wait_for(lambda: not cluster.status().node("kamailio03").online, 30, "kamailio03 seen offline")
    sb.start("kamailio03")
    sb.wait_healthy(timeout=60, expect_online=NODES)


def test_nodes_resolve_each_others_names(whole_sandbox: Sandbox) -> None:
    """`crm node standby NAME` (and anything else given a node name) works inside the sandbox."""
    sb = whole_sandbox
    for node, address in (("kamailio02", "10.220.1.22"), ("kamailio03", "10.220.1.23")):
        assert sb.exec("kamailio01", ["getent", "hosts", node]).stdout.split()[0] == address
    standby = ["crm_attribute", "-t", "nodes", "-N", "kamailio02", "-n", "standby", "-G", "-q"]
    r = sb.exec("kamailio01", ["crm", "node", "standby", "kamailio02"], timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: sb.exec("kamailio01", standby).stdout.strip() in ("on", "true"), 20,
                 "kamailio02 in standby")
    finally:
        sb.exec("kamailio01", ["crm", "node", "online", "kamailio02"], timeout=60)
    wait_for(lambda: sb.exec("kamailio01", standby).stdout.strip() in ("off", "false", ""), 20,
             "kamailio02 online again")


def test_the_sandbox_own_options_never_show_in_a_plan(whole_sandbox: Sandbox) -> None:
    """The short dc-deadtime the sandbox runs with is live, yet a plan of the reference folder on the bare
    sandbox neither shows nor removes it."""
    sb = whole_sandbox
    assert sb.exec("kamailio01", ["crm_attribute", "-n", "dc-deadtime", "-G", "-q"]).stdout.strip() == "2s"
    r = sb.exec("kamailio01", [*HA_GITOPS, "plan", "--dir", str(REFERENCE), "--format", "json"], timeout=180)
    assert r.returncode in (1, 3), r.stdout[-2000:] + r.stderr[-2000:]
    plan = json.loads(r.stdout)
    assert plan["plan"]["cib_changes"], "the bare sandbox lacks the reference resources"
    assert "dc-deadtime" not in json.dumps(plan["plan"])
