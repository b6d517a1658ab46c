"""The pure core without a cluster: marker, substitution, plan rendering, health judgement."""

from __future__ import annotations

import subprocess

from lxml import etree

from controller.cib.document import as_cib
from controller.cib.marker import MARKER_RULE, Marker, read_marker, with_marker
from controller.cluster.cib_writer import pending_changes
from controller.desired.load import load_desired
from controller.desired.substitute import SANDBOX_SUBSTITUTIONS, Substitution, substitute
from controller.health import health_problems
from controller.observed import ClusterStatus, FailedAction, NodeState, ResourceState, parse_crm_mon
from controller.plan import make_plan, render_plan_markdown, render_plan_text
from tests.conftest import CORPUS, REFERENCE


def reference_cib() -> etree._Element:
    return as_cib(load_desired(REFERENCE).configuration())


def live_from(cib: etree._Element) -> etree._Element:
    """A 'live' CIB as Pacemaker would hold it: versioned, with the desired configuration."""
    live = etree.fromstring(etree.tostring(cib))
    live.attrib.update({"admin_epoch": "0", "epoch": "7", "num_updates": "3",
                        "validate-with": "pacemaker-3.9"})
    return live


def test_marker_round_trips_and_is_never_a_difference() -> None:
    cib = reference_cib()
    m = Marker(revision="a" * 40, digest="d1", event="e1", kind="apply", applied_by="kamailio01",
               suspended=True, pinned="b" * 40)
    marked = with_marker(cib, m)
    assert read_marker(marked) == m
    assert read_marker(cib) == Marker()
    # Replacing the marker keeps exactly one set.
    again = with_marker(marked, m.model_copy(update={"event": "e2", "suspended": False}))
    assert len(again.findall(".//cluster_property_set[@id='ha-gitops']")) == 1
    assert read_marker(again).event == "e2" and not read_marker(again).suspended
    # Live with a marker, desired without: no pending change.
    assert pending_changes(live_from(marked), cib) == []
    assert MARKER_RULE.xpath.endswith("[@id='ha-gitops']")


def test_substitution_changes_only_matching_primitives_and_says_so() -> None:
    cib = reference_cib()
    out, done = substitute(cib, SANDBOX_SUBSTITUTIONS)
    kam = out.find(".//primitive[@id='KAMAILIO01']")
    assert (kam.get("class"), kam.get("provider"), kam.get("type")) == ("ocf", "pacemaker", "Dummy")
    assert [d.resource for d in done] == ["KAMAILIO01"] and done[0].original == "systemd:kamailio"
    ip = out.find(".//primitive[@id='IP-HA-01']")
    assert ip.get("type") == "IPaddr2" and ip.find("instance_attributes") is not None
    # The input is untouched (the desired state is never edited).
    assert cib.find(".//primitive[@id='KAMAILIO01']").get("class") == "systemd"
    none, nothing = substitute(cib, [Substitution(match_class="lsb", match_type="*")])
    assert nothing == [] and none.find(".//primitive[@id='KAMAILIO01']").get("class") == "systemd"


def test_plan_lists_changes_steps_and_renders_for_humans_and_pull_requests() -> None:
    desired = load_desired(REFERENCE)
    cib = reference_cib()
    live = live_from(cib)
    live.find(".//nvpair[@name='resource-stickiness']").set("value", "42")
    coro = (REFERENCE / "corosync.conf").read_text().replace("token: 3000", "token: 5000")
    plan = make_plan(desired, live, coro, revision="c" * 40)
    assert plan.changed
    assert [(c.kind, c.action) for c in plan.cib_changes] == [("rsc_default", "changed")]
    assert [(c.path, c.old, c.new, c.change_class) for c in plan.corosync_changes] == [
        ("totem.token", "5000", "3000", "reload")]
    assert [s.kind for s in plan.steps] == ["cib-patch", "corosync-write", "corosync-reload"]
    # The standby, voting-only node goes first.
    assert plan.steps[1].description.endswith("kamailio03, kamailio01, kamailio02")
    text = render_plan_text(plan)
    assert "resource-stickiness" in text and "42 -> 100" in text and "cccccccccccc" in text
    md = render_plan_markdown(plan)
    assert md.startswith("### ha-gitops plan") and "| `totem.token` | 5000 | 3000 | reload |" in md
    same = make_plan(desired, live_from(cib), (REFERENCE / "corosync.conf").read_text())
    assert not same.changed and "No changes" in render_plan_text(same)


def _status(**kw: object) -> ClusterStatus:
    base = {"dc": "n1", "quorate": True,
            "nodes": [NodeState(name="n1", id="1", online=True, standby=False),
                      NodeState(name="n2", id="2", online=True, standby=False)],
            "resources": [ResourceState(id="vip", agent="ocf:heartbeat:IPaddr2", role="Started", active=True,
                                        nodes=["n1"])],
            "failed_actions": []}
    base.update(kw)
    return ClusterStatus.model_validate(base)


def test_health_blames_only_what_the_change_broke() -> None:
    before = _status()
    assert health_problems(before, _status()) == []
    failed = FailedAction(op_key="x_start_0", node="n2", exitstatus="error", call=5)
    after = _status(failed_actions=[failed], quorate=False,
                    resources=[ResourceState(id="vip", agent="a", role="Stopped", active=False)],
                    nodes=[NodeState(name="n1", id="1", online=True, standby=False),
                           NodeState(name="n2", id="2", online=False, standby=False, unclean=True)])
    kinds = sorted(p.kind for p in health_problems(before, after))
    assert kinds == ["failed-action", "quorum", "resource", "unclean"]
    # A failure that was already there before the change is not the change's fault.
    assert health_problems(_status(failed_actions=[failed]), _status(failed_actions=[failed])) == []
    # target-role Stopped is a healthy Stopped.
    stopped = ResourceState(id="vip", agent="a", role="Stopped", active=False, target_role="Stopped")
    assert health_problems(before, _status(resources=[stopped])) == []


def test_crm_mon_models_from_real_crm_mon_output_of_corpus_cibs() -> None:
    # crm_mon renders a CIB file offline (CIB_file): its own XML is the input the parser must handle.
    seen = {"resources": 0, "failures": 0, "online": 0}
    for name in ("crm_mon.xml", "crm_mon-partial.xml", "crm_mon-unmanaged.xml"):
        cib = CORPUS / "cib" / "pacemaker-cli" / name
        r = subprocess.run(["crm_mon", "--one-shot", "--inactive", "--output-as=xml"], capture_output=True,
                           text=True, timeout=30, env={"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"})
        assert r.returncode in (0, 102), r.stderr  # 102: not connected to a live cluster's DC
        st = parse_crm_mon(r.stdout)
        root = etree.fromstring(r.stdout.encode())
        assert [n.name for n in st.nodes] == [n.get("name") for n in root.iterfind("nodes/node")]
        assert len(st.resources) == len(list(root.iter("resource")))
        assert len(st.failed_actions) == len(root.findall("failures/failure"))
        assert st.dc == (root.find("summary/current_dc").get("name")
                         if root.find("summary/current_dc").get("present") == "true" else None)
        seen["resources"] += len(st.resources)
        seen["failures"] += len(st.failed_actions)
        seen["online"] += sum(n.online for n in st.nodes)
    assert all(seen.values()), seen  # the corpus exercises every part of the model
