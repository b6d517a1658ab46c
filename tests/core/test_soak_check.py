"""The chaos soak's invariant checker (bench/soak_check.py) over hand-made evidence: each invariant passes
on evidence of a well-behaved cluster and fails, naming the evidence, on the fault it exists to catch."""

from __future__ import annotations

from typing import Any

from bench import soak_check as sc

T0 = 1_800_000_000.0
A, B, C = "a" * 40, "b" * 40, "c" * 40  # git order: A, B, C
NODES = ["kamailio01", "kamailio02", "kamailio03"]

PCMK_LOG = """\
Dec 02 00:53:45.579 kamailio02 pacemakerd [25] (main) \tnotice: Starting Pacemaker 2.1.5 | build=x
Dec 02 00:53:46.747 kamailio02 pacemaker-controld [32] (pcmk__corosync_quorum_connect) notice: Quorum acquired
Dec 02 00:53:50.287 kamailio02 pacemaker-based [27] (cib_process_request) info: Completed cib_apply_diff \
operation for section 'all': OK (rc=0, origin=kamailio02/cibadmin/2, version=0.5.0)
Dec 02 00:53:50.299 kamailio02 pacemaker-based [27] (cib_process_request) info: Completed cib_apply_diff \
operation for section 'all': OK (rc=0, origin=kamailio01/cibadmin/2, version=0.6.0)
Dec 02 00:54:12.383 kamailio02 pacemaker-controld [32] (quorum_notification_cb) warning: Quorum lost | m=1
Dec 02 00:54:12.387 kamailio02 pacemaker-controld [32] (abort_transition_graph) info: Transition 2 aborted: \
Quorum lost | source=crm_update_quorum:446 complete=true
Dec 02 00:54:03.500 kamailio02 pacemaker-based [27] (cib_process_request) info: Forwarding cib_apply_diff \
operation for section 'all' to all (origin=local/cibadmin/2)
Dec 02 00:54:12.391 kamailio02 pacemaker-based [27] (cib_process_request) info: Completed cib_apply_diff \
operation for section 'all': OK (rc=0, origin=kamailio02/cibadmin/9, version=0.9.0)
Dec 02 00:54:22.279 kamailio02 pacemaker-controld [32] (quorum_notification_cb) \tnotice: Quorum acquired | x
"""


def event(trail: str, id: int, t: float, kind: str, sha: str | None = None, node: str = "kamailio01",
          outcome: str = "success", **details: Any) -> sc.Event:
    return sc.Event(trail=trail, id=id, time=t, node=node, kind=kind, outcome=outcome, sha=sha,
                    details=details)


def healthy(**changes: Any) -> sc.Evidence:
    """Three pushes applied in order, one hand edit recorded and corrected, every node converged."""
    base: dict[str, Any] = dict(
        head=C, git_order=[A, B, C],
        pushes=[sc.Push(sha=B, kind="invalid", what="missing agent", pushed_at=T0 + 1),
                sc.Push(sha=C, kind="valid", what="stickiness", pushed_at=T0 + 2, live_at=T0 + 2.7)],
        hand_edits=[sc.HandEdit(node="kamailio02", how="crm_attribute", token="50001", started=T0 + 5,
                                ended=T0 + 5.1, ok=True)],
        faults=[sc.Fault(kind="cut", node="kamailio02", started=T0 + 10, healed=T0 + 30)],
        writes=[], quorum=[],
        events=[event(n, 1, T0, "apply", A, marker_event="m1") for n in NODES]
        + [event(n, 2, T0 + 2.5, "apply", C, marker_event="m3") for n in NODES]
        + [event("kamailio02", 3, T0 + 6, "drift-detected", C, node="kamailio02")
           .model_copy(update={"diff": [{"kind": "rsc_default", "id": "rsc-options", "action": "changed",
                                         "details": [{"field": "resource-stickiness", "old": "1003",
                                                      "new": "50001"}]}]})],
        markers=[sc.MarkerSample(node="kamailio01", time=T0, revision=A, kind="apply"),
                 sc.MarkerSample(node="kamailio01", time=T0 + 2.5, revision=C, kind="apply")],
        agent_exits=[],
        final=[sc.NodeFinal(node=n, marker_revision=C, plan_exit=0, corosync_matches=True,
                            audit_verify_ok=True, audit_checked=4, agent_running=True, agent_restarts=0)
               for n in NODES],
        converged=True)
    base.update(changes)
    return sc.Evidence(**base)


def verdicts(ev: sc.Evidence) -> dict[str, sc.Verdict]:
    return {v.name: v for v in sc.check(ev, T0)}


def test_a_well_behaved_cluster_passes_every_invariant() -> None:
    results = verdicts(healthy())
    assert all(v.ok for v in results.values()), {k: v.violations for k, v in results.items() if not v.ok}
    assert results["every hand edit recorded"].checked == 1


def test_pacemaker_log_gives_own_writes_and_quorum_changes() -> None:
    writes, quorum = sc.parse_pacemaker_log("kamailio02", PCMK_LOG, 2026)
    # Only the node's own cibadmin patches (kamailio01's write replicated here is not kamailio02's).
    assert [w.version for w in writes] == ["0.5.0", "0.9.0"]
    assert [q.quorate for q in quorum] == [False, True, False, True]  # the abort line is not a change


def test_a_write_after_quorum_lost_is_a_violation_with_its_delay() -> None:
    writes, quorum = sc.parse_pacemaker_log("kamailio02", PCMK_LOG, 2026)
    v = sc.no_write_without_quorum(healthy(writes=writes, quorum=quorum), T0)
    assert not v.ok and v.checked == 2
    assert len(v.violations) == 1
    assert "0.9.0" in v.violations[0] and "8 ms after `Quorum lost`" in v.violations[0]
    assert "held across the membership change: forwarded to the cluster 8.88s before" in v.violations[0]
    # With the writer's own event: how long before the loss its write stage began (a patch held across
    # the membership change).
    late = writes[1].time
    own = event("kamailio02", 5, late + 0.2, "apply", C, node="kamailio02", guard_seconds=0.04,
                timings={"write": 9.0}).model_copy(update={"cib_version_after": "0.9.3"})
    v = sc.no_write_without_quorum(healthy(writes=writes, quorum=quorum, events=[own]), T0)
    assert "audit kamailio02#5 apply of cccccccccccc" in v.violations[0]
    assert "write stage (9.00s, guard 0.04s) began 8.79s before that line" in v.violations[0]


def test_an_older_revision_applied_after_a_newer_one_is_stale() -> None:
    ev = healthy()
    stale = [event("kamailio03", 9, T0 + 12, "apply", B, node="kamailio03", marker_event="m9")]
    v = sc.no_stale_revision(ev.model_copy(update={"events": ev.events + stale}), T0)
    assert not v.ok and "applied bbbbbbbbbbbb" in v.violations[0]
    assert "during cut of kamailio02" in v.violations[0]
    # The same write seen through the marker on disk.
    m = sc.MarkerSample(node="kamailio03", time=T0 + 12, revision=B, kind="apply", event="m9")
    v = sc.no_stale_revision(ev.model_copy(update={"markers": [*ev.markers, m.model_copy(
        update={"time": T0 + 1, "revision": C})], }), T0)
    assert v.ok
    v = sc.no_stale_revision(ev.model_copy(update={"markers": [
        sc.MarkerSample(node="kamailio03", time=T0 + 3, revision=C, kind="apply"), m]}), T0)
    assert not v.ok and "marker on kamailio03" in v.violations[0]


def test_a_valid_commit_rolled_back_is_false_blame_an_injected_bad_one_is_not() -> None:
    ev = healthy()
    rollback = event("kamailio01", 9, T0 + 14, "auto-rollback", C, bad_revision=C, marker_event="m10",
                     problems=[{"kind": "resource", "message": "IP-HA-01 is Stopped, not Started"}])
    v = sc.no_valid_commit_marked_bad(ev.model_copy(update={"events": [*ev.events, rollback]}))
    assert not v.ok and "cccccccccccc (valid: stickiness) marked bad" in v.violations[0]
    rows = sc.auto_rollbacks(ev.model_copy(update={"events": [*ev.events, rollback]}), T0)
    assert rows[0]["why"] == "IP-HA-01 is Stopped, not Started"
    assert rows[0]["fault"] == "during cut of kamailio02"
    bad = [sc.Push(sha=C, kind="bad", what="IPaddr2 on no NIC", pushed_at=T0 + 2)]
    assert sc.no_valid_commit_marked_bad(ev.model_copy(update={"events": [*ev.events, rollback],
                                                               "pushes": bad})).ok


def test_an_unrecorded_hand_edit_and_a_drift_no_edit_explains_fail() -> None:
    ev = healthy()
    lost = sc.HandEdit(node="kamailio01", how="cibadmin --modify", token="50002", started=T0 + 8,
                       ended=T0 + 8.1, ok=True)
    failed = lost.model_copy(update={"token": "50003", "ok": False})
    v = sc.hand_edits_recorded(ev.model_copy(update={"hand_edits": [*ev.hand_edits, lost, failed]}), T0)
    assert not v.ok and v.checked == 2 and "t+8.0s" in v.violations[0]
    assert "recorded in no trail" in v.violations[0]
    # An apply of a push made before the edit overwrote it: named, with the push's lead.
    over = event("kamailio01", 8, T0 + 9, "apply", C).model_copy(update={"diff": [
        {"kind": "rsc_default", "id": "rsc-options", "action": "changed",
         "details": [{"field": "resource-stickiness", "old": "50002", "new": "1003"}]}]})
    v = sc.hand_edits_recorded(ev.model_copy(update={"hand_edits": [lost], "events": [*ev.events, over]}), T0)
    assert "overwritten by kamailio01#8 apply at t+9.0s (its diff has old=50002); cccccccccccc was pushed " \
           "6.0s before the edit, with no drift event" in v.violations[0]
    false = event("kamailio03", 7, T0 + 20, "drift-detected", C, node="kamailio03",
                  origin={"update-client": "cibadmin", "update-origin": "kamailio01"})
    v = sc.no_false_drift(ev.model_copy(update={"events": [*ev.events, false]}), T0)
    assert not v.ok and "kamailio03#7" in v.violations[0] and "cibadmin@kamailio01" in v.violations[0]


def test_convergence_audit_and_agents() -> None:
    ev = healthy()
    final = [ev.final[0].model_copy(update={"plan_exit": 1, "plan_out": "1 change"}),
             ev.final[1].model_copy(update={"audit_verify_ok": False, "audit_verify_out": "missing 4..6"}),
             ev.final[2].model_copy(update={"agent_running": False})]
    bad = ev.model_copy(update={"final": final})
    assert "plan` exit 1" in sc.converged(bad).violations[0]
    assert "missing 4..6" in sc.audit_chains_intact(bad).violations[0]
    assert "kamailio03: agent not running" in sc.agents_alive(bad).violations[0]
    kill = sc.Fault(kind="agent-kill", node="kamailio01", started=T0 + 40, healed=T0 + 48)
    killed = "main process exited, code=killed, status=9/KILL"
    exits = [sc.AgentExit(node="kamailio01", time=T0 + 40, line=killed),
             sc.AgentExit(node="kamailio02", time=T0 + 60, line="main process exited, code=exited, status=1")]
    v = sc.agents_alive(ev.model_copy(update={"faults": [*ev.faults, kill], "agent_exits": exits}))
    assert v.violations == ["kamailio02: unexpected agent exit: main process exited, code=exited, status=1"]
