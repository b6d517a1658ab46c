"""The corosync.conf rollout planner (pure): order, gates, vote arithmetic, refusals; and its helpers."""

from __future__ import annotations

from typing import TypedDict, Unpack

from lxml import etree

from controller.cib.marker import NODE_ATTR_RULE, OWN_RULES
from controller.cluster.cib_writer import pending_changes
from controller.corosync import diff_corosync, parse_corosync
from controller.corosync.diff import ChangeClass
from controller.rollout import (
    Gate,
    PeerState,
    RolloutInput,
    expected_runtime,
    gate_problem,
    plan_next,
    rollout_order,
)

D = "d" * 16
OLD = "o" * 16
REV = "r" * 40
RID = f"{D}.{REV[:12]}"  # the rollout of D that REV starts (no node names another START)
NODES = ["kamailio01", "kamailio02", "kamailio03"]


class PeerChange(TypedDict, total=False):
    """What a test changes of a peer (PeerState's fields)."""

    online: bool
    standby: bool
    file: str | None
    applied: str | None
    restart: str | None
    driven: str | None
    votes: int


class InputExtras(TypedDict, total=False):
    """RolloutInput's optional fields, passed on by inp()."""

    restart_refusal: str | None
    restarted: bool
    bad: bool
    previous_digest: str | None
    stalled_for: float
    takeover_after: float
    revision: str


class Case(InputExtras, total=False):
    """inp()'s keywords, for a test that uses the same ones several times."""

    local: str | None
    cls: ChangeClass | None


def peers(**over: PeerChange) -> list[PeerState]:
    """kamailio03 is the standby node, as in the reference cluster."""
    out = []
    for n in NODES:
        base = PeerState(name=n, standby=n == "kamailio03", file=f"{OLD}:", applied=OLD)
        out.append(PeerState.model_validate({**base.model_dump(), **over.get(n, {})}))
    return out


def all_peers(**change: Unpack[PeerChange]) -> list[PeerState]:
    """peers() with the same change on every node."""
    return peers(**{n: change for n in NODES})


def inp(node: str, nodes: list[PeerState], *, local: str | None = OLD, cls: ChangeClass | None = "reload",
        quorate: bool = True, total: int | None = 3, quorum: int | None = 2,
        **kw: Unpack[InputExtras]) -> RolloutInput:
    extras: InputExtras = {"revision": REV, **kw}
    return RolloutInput(node=node, desired_digest=D, local_digest=local,
                        local_class=None if local == D else cls, nodes=nodes,
                        gate=Gate(quorate=quorate, total_votes=total, quorum=quorum), **extras)


def test_order_is_standby_nodes_first_then_by_name() -> None:
    nodes = [PeerState(name="b"), PeerState(name="a"), PeerState(name="z", standby=True),
             PeerState(name="c", standby=True)]
    assert rollout_order(nodes) == ["c", "z", "a", "b"]


def test_reload_standby_node_writes_first_others_wait() -> None:
    nodes = peers()
    first = plan_next(inp("kamailio03", nodes))
    assert (first.kind, first.position, first.change_class) == ("write-file", 1, "reload")
    assert first.order == ["kamailio03", "kamailio01", "kamailio02"]
    for n in ("kamailio01", "kamailio02"):
        a = plan_next(inp(n, nodes))
        assert a.kind == "wait" and "kamailio03" in a.reason


def test_reload_one_at_a_time_then_one_reload_then_verify() -> None:
    nodes = peers(kamailio03={"file": f"{D}:reload"})
    assert plan_next(inp("kamailio01", nodes)).kind == "write-file"
    wait = plan_next(inp("kamailio02", nodes))
    assert wait.kind == "wait" and "kamailio01" in wait.reason
    # the standby node has its file; it waits until every node has it
    assert plan_next(inp("kamailio03", nodes, local=D)).kind == "wait"
    everyone = all_peers(file=f"{D}:reload")
    assert plan_next(inp("kamailio03", everyone, local=D)).kind == "reload"
    # no verify before the reload: the others wait for it (their verify clock has not started)
    w = plan_next(inp("kamailio01", everyone, local=D))
    assert w.kind == "wait" and "kamailio03 to issue corosync-cfgtool -R" in w.reason and w.in_progress
    reloaded = peers(**{n: PeerChange(file=f"{D}:reload", driven=f"{RID}:reload" if n == "kamailio03"
                                      else None) for n in NODES})
    assert plan_next(inp("kamailio03", reloaded, local=D)).kind == "verify"
    assert plan_next(inp("kamailio01", reloaded, local=D)).kind == "verify"  # only the first issues -R
    done = all_peers(file=f"{D}:reload", applied=D, driven=f"{RID}:healthy")
    assert plan_next(inp("kamailio01", done, local=D)).kind == "nothing"


def test_a_written_but_unreported_file_is_reported_first() -> None:
    a = plan_next(inp("kamailio01", peers(), local=D))
    assert a.kind == "report"


def test_fresh_cluster_reports_without_any_change() -> None:
    nodes = all_peers(file=None, applied=None)
    a = plan_next(inp("kamailio02", nodes, local=D))
    assert a.kind == "report" and a.change_class is None and not a.in_progress


def test_gate_quorum_and_every_node_online() -> None:
    nodes = peers()
    a = plan_next(inp("kamailio03", nodes, quorate=False))
    assert a.kind == "wait" and "not quorate" in a.reason and a.in_progress
    nodes = peers(kamailio02={"online": False})
    a = plan_next(inp("kamailio03", nodes))
    assert a.kind == "wait" and "kamailio02" in a.reason


def test_rolling_restart_waits_for_the_previous_node_to_run_it() -> None:
    nodes = peers(kamailio03={"file": f"{D}:rolling-restart"})  # written, not restarted yet
    a = plan_next(inp("kamailio01", nodes, cls="rolling-restart"))
    assert a.kind == "wait" and "kamailio03" in a.reason
    nodes = peers(kamailio03={"file": f"{D}:rolling-restart", "applied": D})
    assert plan_next(inp("kamailio01", nodes, cls="rolling-restart")).kind == "restart-self"
    assert plan_next(inp("kamailio02", nodes, cls="rolling-restart")).kind == "wait"


def test_votes_arithmetic_refuses_a_restart_that_would_lose_quorum() -> None:
    nodes = peers()
    ok = plan_next(inp("kamailio03", nodes, cls="rolling-restart"))
    assert ok.kind == "restart-self"
    # a node with 2 of 4 votes, quorum 3: taking it down leaves 2
    heavy = peers(kamailio03={"votes": 2})
    a = plan_next(inp("kamailio03", heavy, cls="rolling-restart", total=4, quorum=3))
    assert a.kind == "wait" and "leave 2 vote(s); quorum needs 3" in a.reason
    # without quorumtool numbers: the node list's votes, majority
    assert gate_problem(inp("kamailio03", nodes, total=None, quorum=None),
                        leaving=nodes[0]) is None


def test_the_most_disruptive_class_any_node_reports_wins() -> None:
    nodes = peers(kamailio03={"file": f"{D}:rolling-restart", "applied": D})
    a = plan_next(inp("kamailio01", nodes, cls="reload"))
    assert a.change_class == "rolling-restart" and a.kind == "restart-self"


def test_cluster_restart_refused_by_policy() -> None:
    a = plan_next(inp("kamailio03", peers(), cls="cluster-restart", restart_refusal="no window"))
    assert a.kind == "refuse" and a.reason == "no window" and not a.in_progress


def test_cluster_restart_driven_by_the_standby_node_then_every_node_restarts() -> None:
    everyone = all_peers(file=f"{D}:cluster-restart")
    assert plan_next(inp("kamailio03", everyone, local=D)).kind == "cluster-restart"
    assert plan_next(inp("kamailio01", everyone, local=D)).kind == "wait"
    asked = all_peers(file=f"{D}:cluster-restart", restart=D)
    # once asked, a node restarts even though the cluster is no longer whole (the others restart too)
    a = plan_next(inp("kamailio01", asked, local=D, quorate=False, restart_refusal="window closed"))
    assert a.kind == "restart-self"
    # the driver, back first, waits for the others instead of asking again
    back = peers(**{n: PeerChange(file=f"{D}:cluster-restart", restart=D,
                                  applied=D if n == "kamailio03" else OLD) for n in NODES})
    assert plan_next(inp("kamailio03", back, local=D, quorate=False)).kind == "wait"


def test_unknown_node_waits() -> None:
    assert plan_next(inp("other", peers())).kind == "wait"


def test_expected_runtime_token_with_coefficient() -> None:
    old = parse_corosync("totem {\n token: 3000\n}\nquorum {\n expected_votes: 3\n}\n")
    new = parse_corosync("totem {\n token: 1000\n}\nquorum {\n expected_votes: 4\n}\n")
    exp = expected_runtime(diff_corosync(old, new), {"token": "1000"})
    assert set(exp) == {"totem.token", "runtime.config.totem.token", "quorum.expected_votes"}
    assert exp["totem.token"].matches("1000") and not exp["totem.token"].matches("3000")
    runtime = exp["runtime.config.totem.token"]
    assert runtime.matches("1000") and runtime.matches("1650") and runtime.matches("3600")  # measured
    assert not runtime.matches("3650") and not runtime.matches("3000")  # the old token's values
    assert exp["quorum.expected_votes"].matches("4") and not exp["quorum.expected_votes"].matches(None)


def _cib(nodes_xml: str) -> etree._Element:
    return etree.fromstring(f'<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/>'
                            f"<nodes>{nodes_xml}</nodes><resources/><constraints/></configuration></cib>")


def test_rollout_node_attributes_are_not_a_cib_difference() -> None:
    desired = _cib('<node id="1" uname="a"/><node id="3" uname="c"><instance_attributes id="nodes-3">'
                   '<nvpair id="nodes-3-standby" name="standby" value="on"/></instance_attributes></node>')
    live = _cib('<node id="1" uname="a"><instance_attributes id="nodes-1"><nvpair id="nodes-1-ha-gitops-'
                'corosync" name="ha-gitops-corosync" value="x:reload"/></instance_attributes></node>'
                '<node id="3" uname="c"><instance_attributes id="nodes-3">'
                '<nvpair id="nodes-3-standby" name="standby" value="on"/>'
                '<nvpair id="nodes-3-ha-gitops-corosync" name="ha-gitops-corosync" value="x:"/>'
                "</instance_attributes></node>")
    assert pending_changes(live, desired) == []
    # ... while a real node attribute still is
    drift = _cib('<node id="1" uname="a"/><node id="3" uname="c"/>')
    assert pending_changes(live, drift)
    assert NODE_ATTR_RULE in OWN_RULES  # the rule that makes it so is one every diff uses


def test_after_the_last_node_the_driver_checks_health_once() -> None:
    done = all_peers(file=f"{D}:reload", applied=D)
    a = plan_next(inp("kamailio03", done, local=D))
    assert a.kind == "check-health" and a.in_progress
    w = plan_next(inp("kamailio01", done, local=D))  # only the driver judges
    assert w.kind == "wait" and "kamailio03 to check" in w.reason
    checked = peers(**{n: PeerChange(file=f"{D}:reload", applied=D, driven=f"{RID}:healthy"
                                     if n == "kamailio03" else None) for n in NODES})
    assert plan_next(inp("kamailio03", checked, local=D)).kind == "nothing"
    assert plan_next(inp("kamailio01", checked, local=D)).kind == "nothing"


def test_bad_reload_every_node_that_wrote_restores_and_reloads_at_once() -> None:
    wrote = all_peers(file=f"{D}:reload", applied=D)
    for n in NODES:
        a = plan_next(inp(n, wrote, local=D, bad=True, previous_digest=OLD, quorate=False))
        assert (a.kind, a.restart) == ("restore", False)  # no gate: lost quorum may be the failure
    # restored locally, the CIB not told yet: report; then nothing, and nothing retried
    assert plan_next(inp("kamailio01", wrote, local=OLD, bad=True, previous_digest=OLD)).kind == "report"
    a = plan_next(inp("kamailio01", peers(), local=OLD, bad=True, previous_digest=OLD))
    assert a.kind == "wait" and "kamailio03's final reload" in a.reason and a.in_progress
    # once every node reports its previous file, the driver reloads once more, once
    assert plan_next(inp("kamailio03", peers(), local=OLD, bad=True, previous_digest=OLD)).kind == "reload"
    done = peers(kamailio03={"driven": f"{RID}:rollback-reload"})
    assert plan_next(inp("kamailio03", done, local=OLD, bad=True, previous_digest=OLD)).kind == "nothing"
    a = plan_next(inp("kamailio01", done, local=OLD, bad=True, previous_digest=OLD))
    assert a.kind == "nothing" and "marked bad" in a.reason and not a.in_progress


def test_bad_rolling_restart_restores_one_node_at_a_time_in_order() -> None:
    nodes = peers(kamailio03={"file": f"{D}:rolling-restart", "applied": D},
                  kamailio01={"file": f"{D}:rolling-restart", "applied": D})
    kw: Case = {"local": D, "cls": "rolling-restart", "bad": True, "previous_digest": OLD}
    a = plan_next(inp("kamailio03", nodes, **kw))
    assert (a.kind, a.restart) == ("restore", True)
    w = plan_next(inp("kamailio01", nodes, **kw))
    assert w.kind == "wait" and "kamailio03" in w.reason
    # a node that never wrote it has nothing to restore
    assert plan_next(inp("kamailio02", nodes, bad=True, previous_digest=OLD, cls="rolling-restart")).kind \
        == "nothing"
    # the node that failed to rejoin (offline) goes at once
    out = peers(kamailio03={"file": f"{D}:rolling-restart", "applied": D, "online": False},
                kamailio01={"file": f"{D}:rolling-restart", "applied": D})
    assert plan_next(inp("kamailio01", out, **kw)).kind == "restore"


def test_bad_without_a_previous_file_does_nothing() -> None:
    a = plan_next(inp("kamailio01", peers(), local=D, bad=True, previous_digest=None))
    assert a.kind == "nothing" and not a.in_progress


def test_a_node_that_restarted_but_lost_its_report_reports_instead_of_restarting_again() -> None:
    asked = all_peers(file=f"{D}:cluster-restart", restart=D)
    assert plan_next(inp("kamailio01", asked, local=D, restarted=True)).kind == "report"
    rolling = peers(kamailio03={"file": f"{D}:rolling-restart"})
    assert plan_next(inp("kamailio03", rolling, local=D, cls="rolling-restart", restarted=True)).kind \
        == "report"


# ------------------------------------------------------------------ the rollout's identity (issue 10)
def test_a_rollout_is_named_by_the_revision_that_started_it_and_keeps_that_name() -> None:
    # before anyone wrote: this pass's revision
    assert inp("kamailio03", peers()).rollout == RID
    # the first writer's START is everyone's, also for a node on a newer (CIB-only) revision
    started = peers(kamailio03={"file": f"{D}:reload:aaaaaaaaaaaa"})
    assert inp("kamailio01", started, revision="b" * 40).rollout == f"{D}.aaaaaaaaaaaa"
    a = plan_next(inp("kamailio01", started, revision="b" * 40))
    assert a.kind == "write-file" and a.rollout == f"{D}.aaaaaaaaaaaa"
    # the earliest node in the order wins when two START values are seen
    two = peers(kamailio03={"file": f"{D}:reload:aaaaaaaaaaaa"}, kamailio01={"file": f"{D}:reload:cccc"})
    assert inp("kamailio02", two).rollout == f"{D}.aaaaaaaaaaaa"


def test_a_revert_to_a_file_rolled_out_before_is_a_new_rollout() -> None:
    # 3000 (D) -> 3250 (OLD here) -> 3000 again: the nodes' attributes name OLD, and the old reload and
    # health check of D (by rollout D.first) do not count for the new one.
    old_rollout = f"{D}.{'f' * 12}"
    nodes = all_peers(file=f"{OLD}:reload:{'e' * 12}", applied=OLD, driven=f"{old_rollout}:healthy")
    first = inp("kamailio03", nodes, revision="9" * 40)
    assert first.rollout == f"{D}.{'9' * 12}" != old_rollout
    assert plan_next(first).kind == "write-file"
    written = all_peers(file=f"{D}:reload:{'9' * 12}", applied=OLD, driven=f"{old_rollout}:reload")
    assert plan_next(inp("kamailio03", written, local=D, revision="9" * 40)).kind == "reload"
    assert plan_next(inp("kamailio01", written, local=D, revision="9" * 40)).kind == "wait"


def test_a_node_whose_file_differs_from_what_every_node_runs_writes_it_back() -> None:
    # A rollout to OLD2 reverted after kamailio03 wrote its file, before any reload: every node still runs
    # D, but kamailio03's file is the other one. Not "nothing": it writes D back (in order, no reload
    # needed since no runtime moved), so its file is what it runs.
    nodes = peers(kamailio03={"file": f"{'2' * 16}:reload:x"}, kamailio01={"applied": D, "file": f"{D}:"},
                  kamailio02={"applied": D, "file": f"{D}:"})
    nodes[2] = nodes[2].model_copy(update={"applied": D})
    a = plan_next(inp("kamailio03", nodes, local="2" * 16))
    assert a.kind == "write-file" and a.change_class == "reload"
    back = all_peers(applied=D, file=f"{D}:reload:{REV[:12]}")
    assert plan_next(inp("kamailio03", back, local=D)).kind == "check-health"


# ------------------------------------------------------------------ a driver that does not act
def test_a_reload_the_driver_does_not_issue_is_taken_over_by_the_next_node_in_the_order() -> None:
    written = all_peers(file=f"{D}:reload:{REV[:12]}")
    early = plan_next(inp("kamailio01", written, stalled_for=29, takeover_after=30, local=D))
    assert early.kind == "wait" and "kamailio03" in early.reason
    a = plan_next(inp("kamailio01", written, stalled_for=30, takeover_after=30, local=D))
    assert (a.kind, a.takeover_from) == ("reload", "kamailio03")
    assert "no corosync-cfgtool -R 30s after every node had the new file" in a.reason
    # the node after it waits twice as long (the first stand-in may be dead too)
    assert plan_next(inp("kamailio02", written, stalled_for=59, takeover_after=30, local=D)).kind == "wait"
    a = plan_next(inp("kamailio02", written, stalled_for=60, takeover_after=30, local=D))
    assert (a.kind, a.takeover_from) == ("reload", "kamailio03")
    # the driver itself, back (restarted), issues it whatever the clock says
    a = plan_next(inp("kamailio03", written, stalled_for=90, takeover_after=30, local=D))
    assert (a.kind, a.takeover_from) == ("reload", None)
    # never past the gate
    assert plan_next(inp("kamailio01", written, stalled_for=90, quorate=False, local=D)).kind == "wait"
    # once any node says it reloaded (or checked the health after it), nobody reloads again
    for step in ("reload", "healthy"):
        done = peers(**{n: PeerChange(file=f"{D}:reload:{REV[:12]}",
                                      driven=f"{RID}:{step}" if n == "kamailio01" else None) for n in NODES})
        assert plan_next(inp("kamailio02", done, stalled_for=90, local=D)).kind == "verify"
        assert plan_next(inp("kamailio03", done, stalled_for=90, local=D)).kind == "verify"


def test_health_check_cluster_restart_and_final_rollback_reload_are_taken_over_too() -> None:
    ran = all_peers(file=f"{D}:reload:{REV[:12]}", applied=D)
    assert plan_next(inp("kamailio01", ran, local=D, stalled_for=10, takeover_after=30)).kind == "wait"
    a = plan_next(inp("kamailio01", ran, local=D, stalled_for=31, takeover_after=30))
    assert (a.kind, a.takeover_from) == ("check-health", "kamailio03")

    restart = all_peers(file=f"{D}:cluster-restart:{REV[:12]}")
    assert plan_next(inp("kamailio01", restart, local=D, stalled_for=10)).kind == "wait"
    a = plan_next(inp("kamailio01", restart, local=D, stalled_for=30))
    assert (a.kind, a.takeover_from) == ("cluster-restart", "kamailio03")

    restored = peers()  # every node reports its previous file again
    assert plan_next(inp("kamailio01", restored, stalled_for=10, local=OLD, bad=True,
                         previous_digest=OLD)).kind == "wait"
    a = plan_next(inp("kamailio01", restored, stalled_for=30, local=OLD, bad=True, previous_digest=OLD))
    assert (a.kind, a.takeover_from, a.rollout) == ("reload", "kamailio03", RID)


def test_a_node_that_does_not_write_its_file_abandons_the_rollout() -> None:
    # kamailio03 wrote, kamailio01's agent is dead: nobody can write kamailio01's file for it.
    nodes = peers(kamailio03={"file": f"{D}:reload:{REV[:12]}"})
    assert plan_next(inp("kamailio02", nodes, stalled_for=29)).kind == "wait"
    a = plan_next(inp("kamailio02", nodes, stalled_for=30))
    assert a.kind == "abandon" and "kamailio01 did not write the new file" in a.reason
    assert "no reload was issued" in a.reason
    assert plan_next(inp("kamailio03", nodes, local=D, stalled_for=59)).kind == "wait"  # its turn: 2x
    assert plan_next(inp("kamailio03", nodes, local=D, stalled_for=60)).kind == "abandon"
    # the late node itself, back, just writes
    assert plan_next(inp("kamailio01", nodes, stalled_for=600)).kind == "write-file"
    # a node that is down pauses the rollout, it does not abandon it
    down = peers(kamailio03={"file": f"{D}:reload:{REV[:12]}"}, kamailio01={"online": False})
    a = plan_next(inp("kamailio02", down, stalled_for=600))
    assert a.kind == "wait" and "kamailio01" in a.reason


def test_a_rolling_restart_has_no_driver_to_take_over() -> None:
    nodes = peers(kamailio03={"file": f"{D}:rolling-restart:{REV[:12]}"})
    a = plan_next(inp("kamailio01", nodes, cls="rolling-restart", stalled_for=600))
    assert a.kind == "wait" and "kamailio03" in a.reason


def test_bad_cluster_restart_every_node_that_wrote_restores_and_restarts_at_once() -> None:
    # The nodes came back alone (another authkey, another network): out of the cluster, none waits.
    wrote = all_peers(file=f"{D}:cluster-restart:{REV[:12]}", restart=D, online=False)
    for n in NODES:
        a = plan_next(inp(n, wrote, local=D, cls="cluster-restart", bad=True, previous_digest=OLD,
                          quorate=False))
        assert (a.kind, a.restart) == ("restore", True)
