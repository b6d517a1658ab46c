"""Every outcome of the one decision (controller.decide.decide), in milliseconds, without a cluster.

The inputs are real: the reference desired state loaded from desired/kamailio, a live CIB made from it,
crm_mon-shaped status models. Each test states what an operator would see: the verdict, the exit code of
`plan`, the reasons' codes and texts, whether the corosync.conf rollout runs, what drift is corrected to.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from functools import cache
from typing import Any

from lxml import etree

from controller.cib.document import as_cib
from controller.cib.marker import Marker
from controller.cluster.models import ClusterStatus, NodeState
from controller.decide import DecideInput, Decision, decide, never_managed
from controller.desired.findings import Finding
from controller.desired.load import load_desired
from controller.desired.policy import parse_policy
from controller.desired.state import DesiredState
from controller.impact import Impact, NodeAction, ResourceImpact
from controller.plan import cib_plan
from tests.conftest import REFERENCE

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REV = "c" * 40
WINDOW = '[[maintenance_window]]\nname = "night"\ncron = "0 2 * * *"\nduration = "2h"\n'


@cache
def _reference() -> DesiredState:
    return load_desired(REFERENCE)


def state(policy: str = "") -> DesiredState:
    s = _reference()
    return s.model_copy(update={"policy": parse_policy(policy)}) if policy else s


def live_cib(stickiness: str = "100") -> etree._Element:
    live = as_cib(_reference().configuration())
    live.attrib.update({"admin_epoch": "0", "epoch": "7", "num_updates": "3",
                        "validate-with": "pacemaker-3.9"})
    live.find(".//nvpair[@name='resource-stickiness']").set("value", stickiness)
    etree.SubElement(live, "status")
    return live


def status(*, dc: str | None = "kamailio01", quorate: bool = True) -> ClusterStatus:
    nodes = [NodeState(name=f"kamailio0{i}", id=str(182190356 + i), online=True, standby=i == 3)
             for i in (1, 2, 3)]
    return ClusterStatus(dc=dc, quorate=quorate, nodes=nodes, resources=[], failed_actions=[])


CORO = (REFERENCE / "corosync.conf").read_text()


def quiet() -> Impact:
    return Impact()


def restarts(*ids: str) -> Impact:
    return Impact(resources=[ResourceImpact(resource=i, action="restart", pacemaker_action="restart",
                                            nodes=["kamailio01"]) for i in ids])


def run(*, st: DesiredState | None = None, live: etree._Element | None = None, marker: Marker | None = None,
        corosync: str | None = CORO, impact: Impact | None = None, **kw: Any) -> Decision:
    """Decide with the reference state against a live CIB that differs in resource-stickiness (42)."""
    st = st or state()
    live = live if live is not None else live_cib("42")
    cib = cib_plan(st, live)
    args: dict[str, Any] = {"revision": REV, "state": st, "findings": [], "cib": cib, "live": live,
                            "status": status(), "marker": marker or Marker(), "now": NOON,
                            "live_corosync": corosync, "impact": impact if impact is not None else quiet()}
    args.update(kw)
    return decide(DecideInput(**args))


def applied_marker(live: etree._Element | None = None) -> Marker:
    """The marker as it is after the head was written (its digest is the head's)."""
    return Marker(revision=REV, digest=cib_plan(state(), live_cib()).digest, event="e1", kind="apply")


# ------------------------------------------------------------------------------------------------ verdicts
def test_no_source_waits() -> None:
    d = run(revision=None)
    assert (d.verdict, d.codes) == ("wait", ["no-source"])


def test_no_difference_is_no_change_exit_0() -> None:
    d = run(live=live_cib(), marker=Marker(revision=REV))
    assert (d.verdict, d.exit_code, d.reasons, d.plan.changed) == ("no-change", 0, [], False)
    assert d.rollout  # a rollout of this revision under way elsewhere still takes its steps here


def test_a_new_revision_is_applied_exit_1_with_its_steps_and_basis() -> None:
    d = run()
    assert (d.verdict, d.exit_code, d.rollout) == ("apply", 1, True)
    assert [(c.kind, c.action) for c in d.plan.cib_changes] == [("rsc_default", "changed")]
    assert [s.kind for s in d.plan.steps] == ["cib-patch"]
    assert d.basis.revision == REV and d.basis.cib_version == "0.7"
    assert d.basis.desired_digest == state().digest and d.basis.config_digest


def test_invalid_desired_state_is_refused_exit_3_with_every_finding() -> None:
    bad = [Finding(severity="error", file="cib.crm", line=12, element="X",
                   message="resource agent ocf:heartbeat:NoSuchAgent does not exist"),
           Finding(severity="warning", file="corosync.conf", line=3, message="unknown key tokn")]
    d = run(findings=bad)
    assert (d.verdict, d.exit_code, d.codes) == ("refuse", 3, ["invalid"])
    assert "NoSuchAgent" in d.refusal_text() and "cib.crm:12" in d.refusal_text()
    assert not d.rollout and not d.plan.cib_changes  # nothing of it is applied
    assert [f.severity for f in d.findings] == ["error", "warning"]
    # A state that did not load at all is refused the same way.
    none = run(st=None, cib=None, findings=bad[:1], state=None)
    assert (none.verdict, none.codes) == ("refuse", ["invalid"])


def test_a_refused_signature_is_refused() -> None:
    d = run(source_refusal="commit abc is unsigned and require_signed is set")
    assert (d.verdict, d.codes, d.exit_code) == ("refuse", ["signature"], 3)
    assert "unsigned" in d.refusal_text()


def test_suspended_refuses_a_new_revision_and_holds_the_rollout() -> None:
    d = run(marker=Marker(suspended=True))
    assert (d.verdict, d.codes, d.rollout) == ("refuse", ["suspended"], False)


def test_pinned_revision_is_refused_until_a_newer_commit() -> None:
    d = run(marker=Marker(pinned=REV, digest=None))
    assert (d.verdict, d.codes, d.rollout) == ("refuse", ["pinned"], False)
    assert run(marker=Marker(pinned="d" * 40)).verdict == "apply"  # a newer commit clears the pin


def test_bad_revision_is_refused_only_a_corosync_rollback_rolls_on() -> None:
    cib_bad = run(marker=Marker(revision=REV, bad=REV))
    assert (cib_bad.verdict, cib_bad.codes, cib_bad.rollout) == ("refuse", ["bad-revision"], False)
    coro_bad = run(marker=Marker(revision=REV, corosync_bad=REV))
    assert (coro_bad.verdict, coro_bad.codes, coro_bad.rollout) == ("refuse", ["bad-revision"], True)
    assert "corosync.conf rollout" in coro_bad.refusal_text()
    # A bad revision whose restore failed is live, so nothing differs: it is still reported as bad.
    live_bad = run(live=live_cib(), marker=Marker(revision=REV, bad=REV))
    assert (live_bad.verdict, live_bad.codes) == ("refuse", ["bad-revision"])


def test_policy_refusal_lists_every_violation() -> None:
    d = run(st=state("[disruption]\nmax_restarts = 0\nprotect = [\"PROXY01\"]"),
            impact=restarts("IP-HA-01"))
    assert (d.verdict, d.codes, d.exit_code) == ("refuse", ["policy"], 3)
    assert [v.rule for v in d.reasons[0].violations] == ["max_restarts"]
    assert d.plan.impact is not None and d.plan.impact.resources[0].resource == "IP-HA-01"
    # Inside the window the same change is applied.
    night = run(st=state(WINDOW + "[disruption]\nmax_restarts = 0"), impact=restarts("IP-HA-01"),
                now=datetime(2026, 12, 1, 2, 30, tzinfo=UTC))
    assert night.verdict == "apply"


def test_predicted_fencing_is_refused_and_shown() -> None:
    fence = Impact(node_actions=[NodeAction(task="reboot", node="kamailio02", reason="stop failed")])
    d = run(impact=fence)
    assert (d.verdict, d.codes) == ("refuse", ["policy"])
    assert [(v.rule, v.nodes) for v in d.reasons[0].violations] == [("allow_fencing", ["kamailio02"])]
    assert run(st=state("[disruption]\nallow_fencing = true"), impact=fence).verdict == "apply"


def test_an_impact_that_could_not_be_predicted_is_refused() -> None:
    d = decide(DecideInput(revision=REV, state=state(), findings=[], cib=cib_plan(state(), live_cib("42")),
                           live=live_cib("42"), status=status(), marker=Marker(), now=NOON,
                           live_corosync=CORO, impact=None, impact_error="crm_simulate timed out after 60s"))
    assert (d.verdict, d.codes) == ("refuse", ["impact-unknown"])
    assert "timed out after 60s" in d.refusal_text()


def test_a_cluster_restart_the_policy_forbids_refuses_the_whole_revision() -> None:
    coro = CORO.replace("cluster_name: kamailio", "cluster_name: other")
    d = run(corosync=coro)
    assert (d.verdict, d.codes, d.rollout) == ("refuse", ["policy"], False)
    assert [v.rule for v in d.reasons[0].violations] == ["allow_cluster_restart"]
    assert d.plan.cib_changes and d.plan.corosync_class == "cluster-restart"  # shown, not applied


def test_a_corosync_change_the_caller_cannot_roll_out_is_refused_up_front() -> None:
    coro = CORO.replace("token: 3000", "token: 5000")
    d = run(corosync=coro, can_rollout=False)
    assert (d.verdict, d.codes, d.exit_code) == ("refuse", ["unsupported"], 3)
    assert "ha-gitops agent" in d.refusal_text()
    assert run(corosync=coro).verdict == "apply"


def test_several_reasons_are_all_listed() -> None:
    d = run(marker=Marker(suspended=True, pinned=REV), impact=restarts("A"), st=state(
        "[disruption]\nmax_restarts = 0"))
    assert d.codes == ["suspended", "pinned", "policy"]


def test_corosync_only_change_is_applied_with_the_node_order() -> None:
    d = run(live=live_cib(), corosync=CORO.replace("token: 3000", "token: 5000"))
    assert (d.verdict, d.exit_code, d.rollout) == ("apply", 1, True)
    assert [s.kind for s in d.plan.steps] == ["corosync-write", "corosync-reload"]
    assert d.plan.node_order == ["kamailio03", "kamailio01", "kamailio02"]


def test_wait_without_quorum_without_dc_and_on_an_observer() -> None:
    assert run(status=status(quorate=False)).codes == ["no-quorum"]
    assert run(status=status(dc=None)).codes == ["no-dc"]
    obs = run(role="observer")
    assert (obs.verdict, obs.codes, obs.rollout, obs.exit_code) == ("wait", ["not-writer"], False, 1)


def test_observers_roll_corosync_out_only_for_a_revision_the_writer_accepted() -> None:
    token = CORO.replace("token: 3000", "token: 5000")
    # The DC has not taken the revision yet (it may yet refuse it): an observer holds its corosync.conf.
    early = run(live=live_cib(), corosync=token, role="observer")
    assert (early.verdict, early.codes, early.rollout) == ("wait", ["not-writer"], False)
    # The writer takes it: a corosync.conf-only revision is recorded in the marker, then rolled out.
    writer = run(live=live_cib(), corosync=token)
    assert (writer.verdict, writer.rollout, writer.record_revision) == ("apply", True, True)
    # Once the marker names it, every node takes its rollout step.
    later = run(live=live_cib(), corosync=token, role="observer", marker=Marker(revision=REV))
    assert (later.verdict, later.rollout) == ("apply", True)
    # A revision with nothing to change is recorded too (status tells the truth), once.
    assert run(live=live_cib()).record_revision
    assert not run(live=live_cib(), marker=Marker(revision=REV)).record_revision
    assert not run(live=live_cib(), status=status(quorate=False)).record_revision


# ------------------------------------------------------------------------------------------------ drift
def test_drift_of_the_applied_head_is_corrected() -> None:
    d = run(marker=applied_marker())
    assert (d.verdict, d.exit_code) == ("correct-drift", 1)
    assert d.drift is not None and (d.drift.target, d.drift.correct) == ("head", True)
    assert [c.kind for c in d.drift.changes] == ["rsc_default"]


def test_the_writers_own_stop_first_write_is_not_drift() -> None:
    mid_apply = applied_marker().model_copy(update={"kind": "stop-first"})
    assert run(marker=mid_apply, role="observer").drift is None
    assert run(marker=mid_apply, role="observer").codes == ["not-writer"]


def test_drift_mode_report_and_off() -> None:
    assert run(marker=applied_marker(), drift_mode="report").verdict == "report-drift"
    off = run(marker=applied_marker(), drift_mode="off")
    assert (off.verdict, off.drift) == ("no-change", None)


def test_drift_while_suspended_is_recorded_not_corrected() -> None:
    m = applied_marker().model_copy(update={"suspended": True})
    d = run(marker=m)
    assert (d.verdict, d.codes) == ("report-drift", ["suspended"])
    assert d.drift is not None and not d.drift.correct


def test_drift_correction_waits_for_quorum_and_is_left_to_the_writer() -> None:
    d = run(marker=applied_marker(), status=status(quorate=False))
    assert (d.verdict, d.codes) == ("wait", ["no-quorum"]) and d.drift is not None
    assert run(marker=applied_marker(), role="observer").codes == ["not-writer"]


def _hand_edited(last_write: etree._Element) -> etree._Element:
    edited = copy.deepcopy(last_write)
    edited.find(".//nvpair[@name='no-quorum-policy']").set("value", "stop")
    return edited


def test_drift_while_the_head_is_refused_is_corrected_towards_the_last_write() -> None:
    last = live_cib("42")  # what the last ha-gitops write left (an older revision)
    live = _hand_edited(last)
    bad = [Finding(severity="error", file="cib.crm", message="broken")]
    for kw in ({"findings": bad}, {"marker": Marker(pinned=REV)}, {"marker": Marker(bad=REV)},
               {"source_refusal": "unsigned"}):
        d = run(live=live, last_write=last.find("configuration"), **kw)
        assert d.verdict == "refuse", kw
        assert d.drift is not None and (d.drift.target, d.drift.correct) == ("last-write", True), kw
        assert [c.kind for c in d.drift.changes] == ["property"], kw
    suspended = run(live=live, last_write=last.find("configuration"), marker=Marker(suspended=True))
    assert suspended.drift is not None and not suspended.drift.correct
    assert run(live=last, last_write=last.find("configuration"), findings=bad).drift is None


def test_a_hand_edit_a_new_revision_goes_over_is_recorded_not_lost() -> None:
    """Made after the last write while a newer commit waits for its apply: the apply replaces it, so it
    is recorded first (with who made it), never silently overwritten (the chaos soak found 8 in 15 min)."""
    from controller.decision_render import decision_markdown, decision_text

    last = live_cib("42")  # what the last ha-gitops write left (an older revision, stickiness 42)
    live = _hand_edited(last)
    d = run(live=live, last_write=last.find("configuration"))
    assert d.verdict == "apply"
    assert d.drift is not None and (d.drift.target, d.drift.correct) == ("last-write", False)
    assert [c.kind for c in d.drift.changes] == ["property"]
    assert "recorded; the apply of this revision replaces it" in decision_text(d)
    assert "recorded; the apply of this revision replaces it" in decision_markdown(d)
    # An observer waits for the DC's agent, and records it too.
    observed = run(live=live, last_write=last.find("configuration"), role="observer")
    assert observed.verdict == "wait" and observed.drift is not None and not observed.drift.correct
    # No hand edit since the last write, or the writer's own stop-first state: nothing to record.
    assert run(live=last, last_write=last.find("configuration")).drift is None
    stop_first = run(live=live, last_write=last.find("configuration"), marker=Marker(kind="stop-first"))
    assert stop_first.drift is None


# ------------------------------------------------------------------------------------------------ values
def test_a_saved_plan_holds_only_while_nothing_moved() -> None:
    from controller.decide import stale_plan
    from controller.saved_plan import PlanSource, SavedPlan

    saved = run()
    again = SavedPlan.model_validate_json(SavedPlan(node="n", source=PlanSource(), files={}, decision=saved)
                                          .model_dump_json()).decision
    assert stale_plan(again, run()) == []  # the round trip through the file keeps it equal
    moved = live_cib("42")
    moved.set("epoch", "8")
    assert stale_plan(again, run(live=moved)) == ["the live CIB version (admin_epoch.epoch): 0.7 -> 0.8"]
    other = run(revision="d" * 40)
    assert stale_plan(again, other)[0].startswith("the revision: cccccccccccc")
    coro = run(corosync=CORO.replace("token: 3000", "token: 4000"))
    assert any(m.startswith("this node's corosync.conf") for m in stale_plan(again, coro))


def test_the_decision_reads_the_same_in_text_and_markdown() -> None:
    from controller.decision_render import decision_markdown, decision_text

    d = run(st=state("[disruption]\nmax_restarts = 0"), impact=restarts("IP-HA-01"))
    text, md = decision_text(d), decision_markdown(d)
    assert text.startswith("Decision: refuse") and "exit 3" in text
    assert "[policy]" in text and "[max_restarts]" in text and "restart IP-HA-01" in text
    assert md.startswith("⛔ **refuse**") and "`policy`" in md and "`max_restarts`" in md
    assert "IP-HA-01" in md and "| **restart** |" in md
    ok = run()
    assert decision_text(ok).startswith("Decision: apply") and "exit 1" in decision_text(ok)


def test_an_observer_does_not_predict_and_does_not_refuse_for_it() -> None:
    d = decide(DecideInput(revision=REV, state=state(), findings=[], cib=cib_plan(state(), live_cib("42")),
                           live=live_cib("42"), status=status(), marker=Marker(), now=NOON,
                           live_corosync=CORO, impact=None, role="observer"))
    assert (d.verdict, d.codes) == ("wait", ["not-writer"])


# ------------------------------------------------------------------------------------------- first contact
def live_with_extra_resource() -> etree._Element:
    """A running cluster holding a resource git does not know (a hand-copied export that missed it)."""
    live = live_cib()
    etree.SubElement(live.find("configuration/resources"), "primitive",
                     {"id": "LEGACY", "class": "ocf", "provider": "pacemaker", "type": "Dummy"})
    return live


def test_first_contact_that_deletes_waits_for_adopt() -> None:
    d = run(live=live_with_extra_resource())  # no marker: ha-gitops never wrote this cluster
    assert (d.verdict, d.codes, d.exit_code, d.first_contact) == ("wait", ["first-contact"], 1, True)
    assert "resource LEGACY" in d.reasons[0].message and "ha-gitops adopt" in d.reasons[0].message
    assert not d.rollout and not d.record_revision
    assert [(c.id, c.action) for c in d.plan.cib_changes] == [("LEGACY", "removed")]  # the plan is shown


def test_adopt_applies_the_deleting_first_contact() -> None:
    d = run(live=live_with_extra_resource(), role="operator", adopt=True)
    assert (d.verdict, d.codes, d.first_contact) == ("apply", [], True)


def test_first_contact_that_deletes_nothing_is_applied_and_marked_first_contact() -> None:
    d = run()  # only resource-stickiness differs
    assert (d.verdict, d.first_contact) == ("apply", True)
    same = run(live=live_cib())  # nothing differs: the revision is recorded (the marker written)
    assert (same.verdict, same.first_contact, same.record_revision) == ("no-change", True, True)


def test_a_removed_cluster_option_is_not_a_deletion_on_first_contact() -> None:
    live = live_cib()
    etree.SubElement(live.find("configuration/crm_config/cluster_property_set"), "nvpair",
                     id="o-dc-deadtime", name="dc-deadtime", value="2s")
    d = run(live=live)
    assert {c.kind for c in d.plan.cib_changes} == {"property"}  # dc-deadtime goes back to its default
    assert (d.verdict, d.first_contact) == ("apply", True)


def test_a_managed_cluster_deletes_without_adopt() -> None:
    d = run(live=live_with_extra_resource(), marker=Marker(revision="b" * 40, event="e0", kind="apply"))
    assert (d.verdict, d.first_contact) == ("apply", False)
    assert d.plan.removed_resources == ["LEGACY"]


def test_first_contact_waits_on_every_node_and_for_apply_once() -> None:
    observer = run(live=live_with_extra_resource(), role="observer", impact=None)
    assert observer.verdict == "wait" and observer.codes[0] == "first-contact"
    once = run(live=live_with_extra_resource(), role="operator")  # `apply --once` is not `adopt`
    assert (once.verdict, once.codes) == ("wait", ["first-contact"])


def test_a_marker_with_any_value_is_a_managed_cluster() -> None:
    assert never_managed(Marker()) and never_managed(Marker(suspended=False))  # `resume` on a new cluster
    assert not never_managed(Marker(suspended=True)) and not never_managed(Marker(revision=REV))
