"""Verify judges only what the change did (controller.verify.judge): every attribution, in milliseconds.

The statuses are the reference cluster's (desired/kamailio: PROXY01 = IP-HA-01 + KAMAILIO01 on
kamailio01, the stonithssh clone everywhere, kamailio03 a standby)."""

from __future__ import annotations

from lxml import etree

from controller.cib.render import ObjectChange
from controller.cluster.fencing import FenceEvent
from controller.cluster.models import ClusterStatus, NodeState
from controller.impact import Impact, NodeAction, ResourceImpact
from controller.observed import FailedAction, ResourceState
from controller.verify import ChangeScope, VerifyEvidence, change_scope, cluster_whole, judge

NODES = ("kamailio01", "kamailio02", "kamailio03")


def status(*, down: tuple[str, ...] = (), unclean: tuple[str, ...] = (), quorate: bool = True,
           proxy_on: str | None = "kamailio01", failed: tuple[tuple[str, str], ...] = (),
           dc: str = "kamailio01", starting: bool = False) -> ClusterStatus:
    nodes = [NodeState(name=n, id=str(i), online=n not in down and n not in unclean,
                       standby=n == "kamailio03", unclean=n in unclean, is_dc=n == dc)
             for i, n in enumerate(NODES, 1)]
    role = "Starting" if starting else "Started" if proxy_on else "Stopped"
    proxy = [ResourceState(id=rid, agent="x", role=role, active=proxy_on is not None and not starting,
                           nodes=[proxy_on] if proxy_on else [], parent="PROXY01")
             for rid in ("IP-HA-01", "KAMAILIO01")]
    fencing = [ResourceState(id="stonithssh", agent="stonith:external/ssh", role="Started", active=True,
                             nodes=[n], parent="fencing") for n in NODES if n not in down]
    return ClusterStatus(dc=dc, quorate=quorate, nodes=nodes, resources=proxy + fencing,
                         failed_actions=[FailedAction(op_key=k, node=n, exitreason="boom", call=7)
                                         for k, n in failed])


def evidence(after: ClusterStatus, *, samples: list[ClusterStatus] | None = None,
             scope: ChangeScope | None = None, impact: Impact | None = None,
             fences: list[FenceEvent] | None = None, settled: bool = True, whole: bool = False
             ) -> VerifyEvidence:
    """The change under verify touched KAMAILIO01 unless `scope` says otherwise."""
    return VerifyEvidence(before=status(), samples=samples or [], after=after, settled=settled,
                          fences=fences or [], impact=impact, whole=whole,
                          scope=scope or ChangeScope(resources=frozenset({"KAMAILIO01"})))


def test_a_healthy_cluster_is_healthy() -> None:
    v = judge(evidence(status()))
    assert v.outcome == "healthy" and v.problems == []


def test_a_resource_of_the_change_not_running_on_a_whole_cluster_is_blamed() -> None:
    v = judge(evidence(status(proxy_on=None)))
    assert v.outcome == "failed"
    assert {p.subject for p in v.blamed} == {"KAMAILIO01"}
    # IP-HA-01 is in the same group, but the change named only KAMAILIO01 (no closure without a CIB).
    assert {p.subject for p in v.unrelated} == {"IP-HA-01"}


def test_a_failover_under_way_makes_the_verify_inconclusive_not_a_failure() -> None:
    # The soak's false blame: kamailio01 (where PROXY01 ran) dies during the window.
    during = status(down=("kamailio01",), proxy_on=None, dc="kamailio02")
    v = judge(evidence(during, samples=[during]))
    assert v.outcome == "inconclusive"
    assert v.blamed == []
    assert v.left == ["kamailio01"] and "DC changed" in v.faults
    assert "kamailio01 left" in v.summary()


def test_recovering_explains_resources_away_from_the_node_that_left() -> None:
    # kamailio02 left (nothing of PROXY01 ran there); the transition is aborted and recomputed.
    v = judge(evidence(status(down=("kamailio02",), proxy_on=None)))
    assert v.outcome == "inconclusive" and {p.attribution for p in v.problems} == {"fault"}


def test_failed_action_on_a_node_that_left_is_the_fault_not_the_change() -> None:
    v = judge(evidence(status(down=("kamailio02",), failed=(("KAMAILIO01_monitor_30000", "kamailio02"),))))
    assert v.outcome == "inconclusive"
    assert [p.attribution for p in v.problems if p.kind == "failed-action"] == ["fault"]


def test_failed_action_of_the_change_on_a_node_that_stayed_is_blamed_even_during_a_fault() -> None:
    v = judge(evidence(status(down=("kamailio02",), failed=(("KAMAILIO01_start_0", "kamailio01"),))))
    assert v.outcome == "failed"
    assert [(p.kind, p.resource, p.node) for p in v.blamed] == [("failed-action", "KAMAILIO01", "kamailio01")]


def test_a_coincidental_failure_of_an_untouched_resource_is_reported_not_blamed() -> None:
    v = judge(evidence(status(failed=(("IP-HA-01_monitor_10000", "kamailio01"),))))
    assert v.outcome == "healthy"
    assert [(p.attribution, p.resource) for p in v.problems] == [("unrelated", "IP-HA-01")]


def test_a_change_to_cluster_options_is_blamed_for_anything() -> None:
    scope = change_scope([ObjectChange(kind="property", id="cib-bootstrap-options", action="changed")],
                         None, None, None)
    assert scope.everything
    v = judge(evidence(status(failed=(("IP-HA-01_monitor_10000", "kamailio01"),)), scope=scope))
    assert v.outcome == "failed"


def test_a_predicted_stop_is_what_the_change_does() -> None:
    impact = Impact(resources=[ResourceImpact(resource="KAMAILIO01", parent="PROXY01", containers=["PROXY01"],
                                              action="stop", pacemaker_action="stop", nodes=["kamailio01"])])
    v = judge(evidence(status(proxy_on=None), impact=impact,
                       scope=ChangeScope(resources=frozenset({"KAMAILIO01", "IP-HA-01"}))))
    # KAMAILIO01's stop was predicted; IP-HA-01 stopping too was not: blamed.
    assert {p.subject: p.attribution for p in v.problems} == {"KAMAILIO01": "predicted", "IP-HA-01": "change"}
    assert v.outcome == "failed"


def test_predicted_fencing_is_not_a_problem_unpredicted_fencing_is_a_fault() -> None:
    fence = FenceEvent(target="kamailio02", action="reboot", status="success")
    predicted = Impact(node_actions=[NodeAction(task="Fence (reboot)", node="kamailio02")])
    assert judge(evidence(status(), fences=[fence], impact=predicted)).outcome == "healthy"
    v = judge(evidence(status(), fences=[fence]))
    assert v.outcome == "inconclusive" and v.left == ["kamailio02"]


def test_fencing_of_a_node_the_change_acted_on_is_the_change() -> None:
    # A failed stop, or a start with on-fail=fence, escalates to fencing: the change asked for it.
    for action in ("stop", "start"):
        impact = Impact(resources=[ResourceImpact(resource="KAMAILIO01", action=action,
                                                  pacemaker_action=action, nodes=["kamailio01"])])
        fence = FenceEvent(target="kamailio01", action="reboot", status="success")
        v = judge(evidence(status(), fences=[fence], impact=impact))
        assert v.outcome == "failed" and [p.kind for p in v.blamed] == ["fenced"], action
    # The same change, a fencing elsewhere: a fault.
    fence = FenceEvent(target="kamailio02", action="reboot", status="success")
    assert judge(evidence(status(), fences=[fence], impact=impact)).outcome == "inconclusive"


def test_quorum_lost_with_nodes_leaving_is_a_fault_alone_it_is_blamed() -> None:
    gone = status(down=("kamailio02", "kamailio03"), quorate=False)
    assert judge(evidence(gone)).outcome == "inconclusive"
    assert "quorum lost" in judge(evidence(gone)).faults
    v = judge(evidence(status(quorate=False)))
    assert v.outcome == "failed" and [p.kind for p in v.blamed] == ["quorum"]


def test_not_settling_is_blamed_unless_the_cluster_was_recovering() -> None:
    assert judge(evidence(status(), settled=False)).outcome == "failed"
    assert judge(evidence(status(down=("kamailio02",)), settled=False)).outcome == "inconclusive"


def test_a_recheck_once_whole_blames_a_resource_still_down_and_forgives_the_history() -> None:
    during = status(down=("kamailio01",), proxy_on=None, dc="kamailio02")
    back_broken = status(proxy_on=None, dc="kamailio02",
                         failed=(("KAMAILIO01_monitor_30000", "kamailio01"),))
    v = judge(evidence(back_broken, samples=[during], whole=True))
    assert v.outcome == "failed" and "KAMAILIO01" in {p.subject for p in v.blamed}
    # The failed action happened on the node that left: still the fault's, even in the re-check.
    assert [p.attribution for p in v.problems if p.kind == "failed-action"] == ["fault"]
    back_fine = status(proxy_on="kamailio02", dc="kamailio02",
                       failed=(("KAMAILIO01_monitor_30000", "kamailio01"),))
    fence = FenceEvent(target="kamailio01", action="reboot", status="success")
    v = judge(evidence(back_fine, samples=[during], fences=[fence], whole=True))
    assert v.outcome == "healthy" and v.explained  # reported, not waited for again


def test_cluster_whole_names_what_a_recheck_waits_for() -> None:
    before = status()
    assert cluster_whole(before, status(down=("kamailio02",))) == "node(s) kamailio02 to rejoin"
    assert cluster_whole(before, status(unclean=("kamailio02",))) == "node(s) kamailio02 to recover"
    assert cluster_whole(before, status(quorate=False)) == "quorum"
    assert cluster_whole(before, status(starting=True)) == "the cluster to settle"
    assert cluster_whole(before, status()) is None


def test_scope_of_a_constraint_change_is_the_resources_it_names_and_their_group() -> None:
    cib = etree.fromstring(
        "<cib><configuration><resources><group id='PROXY01'><primitive id='IP-HA-01'/>"
        "<primitive id='KAMAILIO01'/></group><clone id='fencing'><primitive id='stonithssh'/></clone>"
        "</resources><constraints><rsc_location id='loc' rsc='PROXY01' node='kamailio01' score='100'/>"
        "</constraints></configuration></cib>")
    scope = change_scope([ObjectChange(kind="constraint", id="loc", action="added")], cib, None, None)
    assert scope.resources == {"PROXY01", "IP-HA-01", "KAMAILIO01"}
    assert not scope.covers("stonithssh:1") and scope.covers("KAMAILIO01")
    removed = change_scope([ObjectChange(kind="constraint", id="loc", action="removed")], None, cib, None)
    assert removed.resources == scope.resources


def test_failed_action_resource_from_the_op_key() -> None:
    def rsc(key: str) -> str:
        return FailedAction(op_key=key, node="n").resource
    assert rsc("KAMAILIO01_monitor_30000") == "KAMAILIO01"
    assert rsc("my_db_migrate_to_0") == "my_db"
    assert rsc("IP_HA_01_start_0") == "IP_HA_01"


def test_a_write_made_while_the_cluster_was_recovering_is_judged_once_whole() -> None:
    # The soak's last false blame: PROXY01 was being moved back after a fault when a valid change was
    # written (crm_simulate's baseline showed the move); it was Stopped when the verify looked.
    moving = Impact(baseline=[ResourceImpact(resource="IP-HA-01", parent="PROXY01", containers=["PROXY01"],
                                             action="move", pacemaker_action="move",
                                             nodes=["kamailio02", "kamailio01"])])
    scope = ChangeScope(resources=frozenset({"IP-HA-01", "KAMAILIO01", "PROXY01"}))
    v = judge(evidence(status(proxy_on=None), impact=moving, scope=scope))
    assert v.outcome == "inconclusive" and not v.blamed
    assert "1 action(s) the cluster was taking anyway" in v.faults
    # Re-checked once whole: still down is the change's.
    assert judge(evidence(status(proxy_on=None), impact=moving, scope=scope, whole=True)).outcome == "failed"
    assert judge(evidence(status(), impact=moving, scope=scope, whole=True)).outcome == "healthy"
