"""Impact prediction with the real crm_simulate on the reference cluster (desired/kamailio).

The fixtures live here, not in a conftest.py: other test folders import their own `conftest`
by that bare name.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from controller.cib.xml import parse_xml_file, to_bytes
from controller.cluster.runner import ToolRunner
from controller.cluster.simulate import simulate
from controller.command import run
from controller.desired.load import load_desired
from controller.desired.policy import parse_policy
from controller.desired.state import DesiredState
from controller.disruption import check_disruption
from controller.impact import Impact, SimulationError, parse_simulation, simulation_cib
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]
SCHEDULER_CORPUS = CORPUS / "cib" / "pacemaker-scheduler"
KAMAILIO = REPO / "desired" / "kamailio"


@pytest.fixture(scope="module")
def kamailio() -> DesiredState:
    return load_desired(KAMAILIO)


@pytest.fixture(scope="module")
def running_cib_bytes(kamailio: DesiredState, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """desired/kamailio after crm_simulate brought every node up and started the resources.

    No crm_feature_set on the input: crm_simulate refuses to inject into a CIB claiming a newer
    feature set than its own.
    """
    work = tmp_path_factory.mktemp("kamailio-status")
    config = kamailio.configuration()
    cib = etree.Element("cib", {"validate-with": "pacemaker-3.7", "admin_epoch": "0", "epoch": "5",
                                "num_updates": "0", "have-quorum": "1"})
    cib.append(config)
    etree.SubElement(cib, "status")
    (work / "empty.xml").write_bytes(to_bytes(cib))
    up = [arg for node in config.iterfind("nodes/node") for arg in ("--node-up", node.get("uname", ""))]
    run(["crm_simulate", "--xml-file", str(work / "empty.xml"), "--simulate",
         "--save-output", str(work / "running.xml"), *up], timeout=60)
    return (work / "running.xml").read_bytes()


@pytest.fixture
def live(running_cib_bytes: bytes, tmp_path: Path) -> etree._Element:
    """A fresh copy of the running reference cluster's CIB (tests may modify it)."""
    path = tmp_path / "live.xml"
    path.write_bytes(running_cib_bytes)
    return parse_xml_file(path)


@pytest.fixture
def desired_config(kamailio: DesiredState) -> etree._Element:
    return copy.deepcopy(kamailio.configuration())


def elements(node: etree._Element, path: str, **variables: str) -> list[etree._Element]:
    found = etree.XPath(path)(node, **variables)
    assert isinstance(found, list), found
    return [e for e in found if isinstance(e, etree._Element)]


def _set_nvpair(config: etree._Element, name: str, value: str) -> None:
    hits = elements(config, ".//nvpair[@name=$n]", n=name)
    assert len(hits) == 1, f"{name}: {len(hits)} nvpairs"
    hits[0].set("value", value)


def _running_on(cib: etree._Element, rsc: str) -> str:
    """The node whose last start of rsc succeeded, read from the <status> crm_simulate wrote."""
    nodes = cib.xpath("status/node_state[lrm/lrm_resources/lrm_resource[@id=$r]"
                      "/lrm_rsc_op[@operation='start' and @rc-code='0']]/@uname", r=rsc)
    assert isinstance(nodes, list) and len(nodes) == 1, nodes
    return str(nodes[0])


def _summary(impact: Impact) -> list[tuple[str, str, str | None, list[str]]]:
    return [(r.resource, r.action, r.parent, r.nodes) for r in impact.resources]


def test_status_fixture_has_the_group_running(live: etree._Element) -> None:
    # the premise of every test below: the reference cluster with PROXY01 started
    node = _running_on(live, "IP-HA-01")
    assert _running_on(live, "KAMAILIO01") == node
    assert simulate(live, live).resources == []  # the same configuration changes nothing


def test_ip_change_restarts_the_address_and_the_group_members_after_it(
        live: etree._Element, desired_config: etree._Element) -> None:
    _set_nvpair(desired_config, "ip", "10.220.1.26")
    impact = simulate(live, desired_config)
    node = _running_on(live, "IP-HA-01")
    assert _summary(impact) == [("IP-HA-01", "restart", "PROXY01", [node]),
                                ("KAMAILIO01", "restart", "PROXY01", [node])]
    assert impact.resources[0].reason == "resource definition change"
    assert impact.resources[1].reason == "required IP-HA-01 start"
    assert impact.disruptive and impact.counts() == {"restart": 2}
    assert "restart  IP-HA-01 (in PROXY01)" in impact.text()
    assert f"| **restart** | `KAMAILIO01` | `PROXY01` | {node} | required IP-HA-01 start |" \
        in impact.markdown()


@pytest.mark.parametrize("change", ["resource-stickiness", "monitor-interval"])
def test_changes_pacemaker_applies_in_place_predict_nothing(
        live: etree._Element, desired_config: etree._Element, change: str) -> None:
    if change == "resource-stickiness":
        _set_nvpair(desired_config, "resource-stickiness", "200")
    else:
        op = elements(desired_config, ".//primitive[@id='IP-HA-01']/operations/op[@name='monitor']")[0]
        assert op.get("interval") == "20"
        op.set("interval", "25")
    impact = simulate(live, desired_config)
    assert impact.resources == [] and not impact.disruptive
    assert impact.text() == "Predicted impact: no resource actions"


def test_removed_resource_is_stopped_and_keeps_its_group(
        live: etree._Element, desired_config: etree._Element) -> None:
    for el in elements(desired_config, ".//primitive[@id='KAMAILIO01']"):
        el.getparent().remove(el)
    impact = simulate(live, desired_config)
    assert _summary(impact) == [("KAMAILIO01", "stop", "PROXY01", [_running_on(live, "KAMAILIO01")])]


def test_location_constraint_moves_the_group(live: etree._Element, desired_config: etree._Element) -> None:
    here = _running_on(live, "IP-HA-01")
    there = next(n for n in ("kamailio01", "kamailio02") if n != here)  # kamailio03 is in standby
    constraints = desired_config.find("constraints")
    assert constraints is not None
    etree.SubElement(constraints, "rsc_location", id="loc-proxy", rsc="PROXY01", node=there,
                     score="INFINITY")
    impact = simulate(live, desired_config)
    assert _summary(impact) == [("IP-HA-01", "move", "PROXY01", [here, there]),
                                ("KAMAILIO01", "move", "PROXY01", [here, there])]


def _failed_monitor(live: etree._Element, tmp_path: Path) -> etree._Element:
    """The live CIB after KAMAILIO01's monitor failed (crm_simulate injects the result only)."""
    node = _running_on(live, "KAMAILIO01")
    (tmp_path / "in.xml").write_bytes(etree.tostring(live))
    run(["crm_simulate", "--xml-file", str(tmp_path / "in.xml"), "--op-inject",
         f"KAMAILIO01_monitor_30000@{node}=7", "--save-output", str(tmp_path / "failed.xml")], timeout=30)
    return parse_xml_file(tmp_path / "failed.xml")


def test_pending_recovery_is_not_blamed_on_the_change(
        live: etree._Element, desired_config: etree._Element, tmp_path: Path) -> None:
    failed = _failed_monitor(live, tmp_path)
    _set_nvpair(desired_config, "resource-stickiness", "200")
    impact = simulate(failed, desired_config)
    assert impact.resources == []
    assert [(r.resource, r.action, r.pacemaker_action) for r in impact.baseline] == [
        ("KAMAILIO01", "restart", "recover")]
    assert "would take anyway: restart KAMAILIO01" in impact.text()
    # without the subtraction the recovery would have been reported
    out = run(["crm_simulate", "--simulate", "--xml-pipe", "--output-as=xml"], timeout=30,
              input=etree.tostring(simulation_cib(failed, desired_config)).decode(),
              env={"CIB_shadow_dir": str(tmp_path)})
    assert [a.action for a in parse_simulation(out.stdout)] == ["recover"]


def test_tool_runner_and_scratch_dir(live: etree._Element, desired_config: etree._Element,
                                     tmp_path: Path) -> None:
    _set_nvpair(desired_config, "ip", "10.220.1.27")
    impact = simulate(live, desired_config, runner=ToolRunner(), scratch_dir=str(tmp_path))
    assert [r.resource for r in impact.of("restart")] == ["IP-HA-01", "KAMAILIO01"]
    # crm_simulate's working copy goes to scratch_dir: a missing one makes it fail
    with pytest.raises(SimulationError, match="live CIB failed"):
        simulate(live, desired_config, scratch_dir=str(tmp_path / "missing"))


def test_invalid_proposed_configuration_is_an_error_naming_the_run(
        live: etree._Element, desired_config: etree._Element) -> None:
    elements(desired_config, ".//primitive[@id='IP-HA-01']")[0].set("bogus", "1")
    with pytest.raises(SimulationError, match=r"proposed CIB failed \(exit 78.*Invalid configuration"):
        simulate(live, desired_config)


def test_live_cib_without_status_is_refused(desired_config: etree._Element) -> None:
    cib = etree.Element("cib")
    cib.append(copy.deepcopy(desired_config))
    with pytest.raises(Exception, match="needs the live <cib> with its <status>"):
        simulate(cib, desired_config)


def test_simulation_cib_bumps_the_epoch_and_keeps_live_attributes(
        live: etree._Element, desired_config: etree._Element) -> None:
    cib = simulation_cib(live, desired_config)
    assert int(cib.get("epoch")) == int(live.get("epoch")) + 1 and cib.get("num_updates") == "0"
    assert cib.get("have-quorum") == live.get("have-quorum") == "1"
    assert [c.tag for c in cib] == ["configuration", "status"]


def test_protect_policy_on_a_real_prediction(kamailio: DesiredState, live: etree._Element,
                                             desired_config: etree._Element) -> None:
    policy = parse_policy('[[maintenance_window]]\nname = "nightly"\ncron = "0 2 * * *"\n'
                          'duration = "2h"\n\n[disruption]\nprotect = ["PROXY01"]\n')
    _set_nvpair(desired_config, "ip", "10.220.1.26")
    impact = simulate(live, desired_config)
    noon = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    violations = check_disruption(impact, policy, noon)
    assert [(v.rule, v.resource, v.action, v.reason) for v in violations] == [
        ("protect", "IP-HA-01", "restart", "resource definition change"),
        ("protect", "KAMAILIO01", "restart", "required IP-HA-01 start")]
    assert "PROXY01 is protected outside a maintenance window" in violations[0].message
    assert check_disruption(impact, policy, noon.replace(hour=3)) == []


# Real Pacemaker regression inputs exercise the verbs the reference cluster cannot produce here.
@pytest.mark.parametrize(("corpus_file", "resource", "action", "verb", "parent", "nodes"), [
    ("bug-5025-1.xml", "A", "reload", "reload", None, ["fc16-builder"]),
    ("migrate-both-vms.xml", "vm-compute-test", "move", "migrate", None, ["cvmh03", "cvmh01"]),
    ("anti-colocation-promoted.xml", "state1:0", "promote", "promote", "ms1", ["sle12sp2-2"]),
    ("anti-colocation-promoted.xml", "state1:1", "demote", "demote", "ms1", ["sle12sp2-1"]),
    ("anti-colocation-promoted.xml", "dummy1", "move", "move", None, ["sle12sp2-2", "sle12sp2-1"]),
])
def test_corpus_actions(corpus_file: str, resource: str, action: str, verb: str, parent: str | None,
                        nodes: list[str], tmp_path: Path) -> None:
    from controller.cluster.simulate import run_crm_simulate
    from controller.impact import predict, resource_containers

    cib = parse_xml_file(SCHEDULER_CORPUS / corpus_file)
    out = run_crm_simulate(cib, scratch_dir=str(tmp_path), what="corpus")
    impact = predict(out, b"<pacemaker-result/>", resource_containers(cib.find("configuration")))
    match = [r for r in impact.resources if r.resource == resource]
    assert len(match) == 1, impact.text()
    assert (match[0].action, match[0].pacemaker_action, match[0].parent, match[0].nodes) == (
        action, verb, parent, nodes)


def test_unknown_verb_fails_closed() -> None:
    from controller.impact import predict

    out = b'<pacemaker-result><actions><rsc_action action="teleport" resource="X" node="n1"/></actions>' \
          b'</pacemaker-result>'
    with pytest.raises(SimulationError, match="unknown action 'teleport' for X"):
        predict(out, b"<pacemaker-result/>", {})


def test_node_actions_are_reported_and_subtracted() -> None:
    from controller.impact import predict

    fence = b'<node_action task="Fence (reboot)" node="n3" reason="peer is no longer part of the cluster"/>'
    out = b"<pacemaker-result><actions>" + fence + b"</actions></pacemaker-result>"
    impact = predict(out, b"<pacemaker-result/>", {})
    assert [(n.task, n.node) for n in impact.node_actions] == [("Fence (reboot)", "n3")]
    assert impact.disruptive and "Fence (reboot) n3  due to peer" in impact.text()
    assert predict(out, out, {}).node_actions == []
