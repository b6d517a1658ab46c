"""The agent on a real cluster: one agent per sandbox node, following a real git repository."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from controller.cib.marker import Marker, read_marker
from controller.observed import ClusterStatus, ResourceState
from controller.sandbox.manager import Sandbox
from tests.agentslib import agents_sandbox, audit, cli, dc, wait_paused
from tests.conftest import sandbox_repo_dir
from tests.helpers import GitRepo, nice_of, node_processes, wait_for

pytestmark = pytest.mark.sandbox

REPO = sandbox_repo_dir("agents")
NODES = ["kamailio01", "kamailio02", "kamailio03"]
FOLDER = "clusters/kamailio"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("agents", FOLDER, synced=False) as e:
        yield e


def _applied(sb: Sandbox, node: str, sha: str) -> dict[str, Any] | None:
    """The node's apply event of the commit, once it is in its trail."""
    return next((e for e in audit(sb, node) if e["kind"] == "apply" and e["commit"]
                 and e["commit"]["sha"] == sha), None)


def marker(sb: Sandbox) -> Marker:
    return read_marker(sb.cluster("kamailio01").read_cib())



def stickiness(sb: Sandbox, node: str = "kamailio01") -> str:
    r = sb.exec(node, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                       "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


def config_epoch(sb: Sandbox) -> tuple[str, str]:
    cib = sb.cluster("kamailio01").read_cib()
    return cib.get("admin_epoch", ""), cib.get("epoch", "")


def set_stickiness_in_git(repo: GitRepo, value: int, message: str) -> str:
    text = repo.read(f"{FOLDER}/cib.crm")
    import re

    text = re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}", text)
    return repo.commit({f"{FOLDER}/cib.crm": text}, message)


def write_fault(sb: Sandbox, node: str, faults: dict[str, float]) -> None:
    (sb.layout.node_dir(node) / "etc-ha-gitops" / "faults.json").write_text(json.dumps(faults))


# ------------------------------------------------------------------------------------------------ tests
def test_initial_sync_of_the_reference_cluster(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    head = repo.head()
    wait_for(lambda: marker(sb).revision == head, 60, "the initial sync")
    def started() -> tuple[ClusterStatus, list[ResourceState]] | None:
        st = sb.cluster("kamailio02").status()
        group = [r for r in st.resources if r.parent == "PROXY01"]
        return (st, group) if all(r.role == "Started" for r in group) and len(group) == 2 else None

    st, group = wait_for(started, 30, "PROXY01 started")
    assert st.node("kamailio03").standby
    assert [r.id for r in group] == ["IP-HA-01", "KAMAILIO01"]
    assert len({r.nodes[0] for r in group}) == 1  # the group runs on one node
    # The sandbox substitutes what a namespace cannot run, visibly: the plan says so.
    code, out, _ = cli(sb, "kamailio01", "plan", "--config", "/etc/ha-gitops/agent.toml")
    assert code == 0, out
    assert "No changes" in out and "KAMAILIO01: systemd:kamailio runs as ocf:pacemaker:Dummy" in out
    # Every node's trail shows the apply, with the commit and the node that applied it.
    for node in NODES:  # an observer records the apply a moment after it sees the marker
        applied = wait_for(functools.partial(_applied, sb, node, head), 30, f"the apply in {node}'s trail")
        assert applied["node"] == marker(sb).applied_by


def test_pushed_commit_is_applied_and_recorded(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    sha = set_stickiness_in_git(repo, 150, "raise stickiness to 150")
    wait_for(lambda: stickiness(sb) == "150", 30, "stickiness 150 live")
    wait_for(lambda: marker(sb).revision == sha, 10, "marker at the new commit")
    for node in NODES:
        ev = wait_for(functools.partial(_applied, sb, node, sha), 15, f"apply on {node}")
        assert ev["outcome"] == "success"
    full = audit(sb, dc(sb))
    applied = next(e for e in full if e["kind"] == "apply" and e["commit"] and e["commit"]["sha"] == sha)
    _, out, _ = cli(sb, dc(sb), "audit", "show", str(applied["id"]), "--format", "json")
    shown = json.loads(out)
    assert shown["commit"]["message"].strip() == "raise stickiness to 150" and shown["patch"]
    assert "resource-stickiness" in json.dumps(shown["diff"])


def test_the_writer_converts_in_a_warm_crmsh_and_records_its_stage_timings(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    sha = set_stickiness_in_git(repo, 155, "stickiness 155")
    wait_for(lambda: stickiness(sb) == "155", 30, "155 live")
    leader = dc(sb)
    ev = wait_for(lambda: next((e for e in audit(sb, leader) if e["kind"] == "apply" and e["commit"]
                                and e["commit"]["sha"] == sha), None), 15, "apply on the DC")
    timings = ev["details"]["timings"]
    assert {"fetch", "load", "validate", "predict", "write"} <= set(timings), timings
    assert all(v >= 0 for v in timings.values())
    # One warm crmsh in the cluster, beside the DC's agent (warm_crm = "dc"); the other agents do not
    # write and run at a lower CPU priority.
    inits = {n: sb.init_pid(n) for n in NODES}

    def one_on_the_dc() -> dict[str, list[int]] | None:
        found = node_processes(inits, b"crm_server.py")
        ok = len(found[leader]) == 1 and not any(found[n] for n in NODES if n != leader)
        return found if ok else None

    wait_for(one_on_the_dc, 20, "one warm crmsh, on the DC")
    agents = node_processes(inits, b"controller.cli", b"agent")
    assert nice_of(agents[leader][0]) == 0
    assert all(nice_of(agents[n][0]) == 10 for n in NODES if n != leader), agents


def test_no_cib_write_on_a_no_op_pass(env: tuple[Sandbox, GitRepo]) -> None:
    sb, _ = env
    before = config_epoch(sb)
    leader = dc(sb)
    for _ in range(3):
        code, out, err = cli(sb, leader, "apply", "--once", "--config", "/etc/ha-gitops/agent.toml")
        assert code == 0 and out.startswith("no-change"), out + err
    assert config_epoch(sb) == before


def test_invalid_commit_is_refused_and_live_untouched(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    before = config_epoch(sb)
    good = repo.read(f"{FOLDER}/cib.crm")
    bad_sha = repo.commit({f"{FOLDER}/cib.crm": good + "primitve broken-typo Dummy\n"}, "typo")
    refused = wait_for(lambda: next((e for e in audit(sb, dc(sb)) if e["kind"] == "refused" and e["commit"]
                                     and e["commit"]["sha"] == bad_sha), None), 30, "refused event")
    assert "cib.crm" in refused["error"] and "primitve" in refused["error"]
    assert config_epoch(sb) == before
    repo.commit({f"{FOLDER}/cib.crm": good}, "fix the typo")
    set_stickiness_in_git(repo, 160, "stickiness 160")
    wait_for(lambda: stickiness(sb) == "160", 30, "the next good commit applied")


def test_drift_is_recorded_with_its_origin_and_corrected(env: tuple[Sandbox, GitRepo]) -> None:
    sb, _ = env
    wanted = stickiness(sb)
    sb.exec("kamailio03", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "7"], check=True)
    wait_for(lambda: stickiness(sb) == wanted, 20, "drift corrected")
    leader = dc(sb)
    # the correction is recorded a moment after its write: wait for the event, not just the CIB
    def correction_recorded() -> list[dict[str, Any]] | None:
        trail = audit(sb, leader)
        return trail if any(e["kind"] == "drift-corrected" for e in trail) else None

    events = wait_for(correction_recorded, 20, "the drift-corrected event")
    detected = next(e for e in events if e["kind"] == "drift-detected")
    origin = detected["details"]["origin"]
    assert origin["update-origin"] == "kamailio03" and origin["update-client"] == "crm_attribute"
    assert origin["update-user"] == "root"
    assert any(e["kind"] == "drift-corrected" and e["id"] > detected["id"] for e in events)
    # The other nodes' trails have the correction too, observed from the marker (they may or may not
    # have seen the drift itself before the DC's agent undid it).
    # An observer records it on its next pass after the marker changed: give it a few seconds.
    for node in NODES:
        def recorded(n: str = node) -> list[dict[str, Any]]:
            return [e for e in audit(sb, n) if e["kind"] == "drift-corrected"]
        corrected = wait_for(recorded, 20, f"{node} records the correction")
        assert corrected[0]["node"] == leader, node


def test_concurrent_hand_edit_during_an_apply_is_neither_lost_nor_fought_blindly(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    leader = dc(sb)
    write_fault(sb, leader, {"before-patch": 3})
    try:
        sha = set_stickiness_in_git(repo, 170, "stickiness 170 (raced)")
        # While the DC's agent holds its plan, an operator edits something else by hand.
        wait_paused(sb, leader, "before-patch", 30)
        sb.exec("kamailio02", ["crm_attribute", "-t", "crm_config", "-n", "cluster-recheck-interval", "-v",
                               "3min"], check=True)
        wait_for(lambda: stickiness(sb) == "170", 40, "the raced commit applied")
    finally:
        write_fault(sb, leader, {})
    ev = wait_for(lambda: next((e for e in audit(sb, leader) if e["kind"] == "apply" and e["commit"]
                                and e["commit"]["sha"] == sha), None), 20, "apply event")
    conflicts = ev["details"].get("conflicts")
    assert conflicts, ev["details"]
    assert conflicts[0]["updated_by"]["update-client"] == "crm_attribute"
    assert conflicts[0]["updated_by"]["update-origin"] == "kamailio02"
    # Re-planned on the new live state: the hand edit was seen (and, not being in git, undone as drift).
    wait_for(lambda: sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n",
                                            "cluster-recheck-interval", "-G", "-q"]).returncode != 0,
             30, "the hand edit undone")


def test_a_hand_edit_a_pending_push_goes_over_is_recorded_first(env: tuple[Sandbox, GitRepo]) -> None:
    """A push waits for the DC's agent (killed: back 5 s later, as systemd would); an operator edits by
    hand meanwhile. The apply replaces the edit (it is not in git), and the trails say who made it."""
    import time

    sb, repo = env
    leader = dc(sb)
    others = [n for n in NODES if n != leader]
    logs = {n: sb.layout.node_dir(n) / "logs" / "agent.out" for n in others}
    sizes = {n: logs[n].stat().st_size for n in others}
    sb.kill(leader, "agent")
    sha = set_stickiness_in_git(repo, 190, "stickiness 190 (pending while the writer is down)")

    def fetched(node: str) -> bool:  # the observer's pass after the push: it knows the new revision
        with logs[node].open("rb") as f:
            f.seek(sizes[node])
            return any(b"pass (" in line and b"push" in line for line in f)

    wait_for(lambda: all(fetched(n) for n in others), 20, "the observers' passes on the push")
    started = time.time()
    sb.exec(others[0], ["crm_attribute", "-t", "crm_config", "-n", "batch-limit", "-v", "37"], check=True)
    wait_for(lambda: stickiness(sb) == "190", 60, "the pending push applied")
    assert time.time() - started < 30

    def recorded() -> dict[str, Any] | None:
        for node in NODES:
            for e in audit(sb, node):
                if e["kind"] == "drift-detected" and '"37"' in json.dumps(e["diff"]) \
                        and e["details"]["origin"]["update-client"] == "crm_attribute":
                    return e
        return None

    ev = wait_for(recorded, 30, "the hand edit recorded as drift")
    assert ev["details"]["origin"]["update-origin"] == others[0]
    assert ev["commit"]["sha"] == sha  # recorded against the revision that replaced it
    wait_for(lambda: sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "batch-limit",
                                            "-G", "-q"]).returncode != 0, 30, "the apply replaced it")


def test_agent_killed_between_write_and_record_converges_without_half_events(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    leader = dc(sb)
    write_fault(sb, leader, {"after-write": 30})
    try:
        sha = set_stickiness_in_git(repo, 180, "stickiness 180 (agent dies)")
        wait_for(lambda: stickiness(sb) == "180", 30, "the write reached the CIB")
        sb.kill(leader, "agent")  # SIGKILL while it sleeps between the CIB write and the audit append
    finally:
        write_fault(sb, leader, {})
    sb.start_services(leader)  # brings the agent back
    ev = wait_for(lambda: next((e for e in audit(sb, leader) if e["commit"] and e["commit"]["sha"] == sha
                                and e["kind"] == "apply"), None), 30, "the recovered apply")
    assert ev["details"].get("recovered") is True
    code, out, err = cli(sb, leader, "audit", "verify")
    assert code == 0, out + err
    # The killed agent's warm crmsh saw its pipe close and went away: one helper, the new agent's.
    inits = {n: sb.init_pid(n) for n in NODES}
    wait_for(lambda: len(node_processes(inits, b"crm_server.py")[leader]) == 1, 20,
             "one warm crmsh on the DC after the restart")


def test_rollback_restores_and_pins_until_a_newer_commit(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    before = stickiness(sb)
    sha = set_stickiness_in_git(repo, 190, "stickiness 190 (to be rolled back)")
    wait_for(lambda: stickiness(sb) == "190", 30, "190 live")
    node = dc(sb)  # the writer: another node's trail may first hold the apply as backfilled from the CIB,
    # without the configuration to return to (rolling back from a non-writer: test_history_on_sandbox)
    ev = wait_for(lambda: next((e for e in audit(sb, node) if e["commit"] and e["commit"]["sha"] == sha
                                and e["kind"] == "apply"), None), 20, f"apply recorded on {node}")
    code, out, err = cli(sb, node, "rollback", str(ev["id"]))
    assert code == 0, out + err
    assert stickiness(sb) == before
    code, out, _ = cli(sb, node, "status", "--format", "json")
    assert json.loads(out)["applied"]["pinned"] == sha
    # The agents do not re-apply the rolled-back revision (a poll interval passes) ...
    import time

    time.sleep(7)
    assert stickiness(sb) == before
    leader_status = json.loads(cli(sb, dc(sb), "status", "--format", "json")[1])
    assert leader_status["agent"]["outcome"] == "pinned"
    # ... until a newer commit arrives.
    set_stickiness_in_git(repo, 195, "stickiness 195")
    wait_for(lambda: stickiness(sb) == "195", 30, "newer commit applied after the pin")
    assert marker(sb).pinned is None
    kinds = [e["kind"] for e in audit(sb, "kamailio03")]
    assert "rollback" in kinds


def test_suspend_and_resume(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    code, _, err = cli(sb, "kamailio02", "suspend")
    assert code == 0, err
    try:
        set_stickiness_in_git(repo, 210, "stickiness 210 while suspended")
        wait_for(lambda: json.loads(cli(sb, dc(sb), "status", "--format", "json")[1])["agent"]["outcome"]
                 == "suspended", 20, "agents report suspended")
        assert stickiness(sb) != "210"
    finally:
        code, _, err = cli(sb, "kamailio02", "resume")
        assert code == 0, err
    sb.exec(dc(sb), ["true"])
    wait_for(lambda: stickiness(sb) == "210", 30, "applied after resume")


def test_force_push_and_unreachable_remote(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    # Force-push: history rewritten; the agents follow the new tip.
    set_stickiness_in_git(repo, 220, "stickiness 220")
    wait_for(lambda: stickiness(sb) == "220", 30, "220 live")
    text = repo.read(f"{FOLDER}/cib.crm").replace("resource-stickiness=220", "resource-stickiness=230")
    rewritten = repo.commit({f"{FOLDER}/cib.crm": text}, "stickiness 230 (amended)", amend=True)
    wait_for(lambda: stickiness(sb) == "230", 30, "force-pushed tip live")
    assert marker(sb).revision == rewritten
    # Unreachable remote: the cluster keeps the last good revision and the agents say why.
    hidden = REPO.with_name("agents-hidden")
    REPO.rename(hidden)
    try:
        wait_for(lambda: (json.loads(cli(sb, dc(sb), "status", "--format", "json")[1])["agent"] or {})
                 .get("source_error"), 30, "the source error reported")
        assert stickiness(sb) == "230"
    finally:
        hidden.rename(REPO)
    set_stickiness_in_git(repo, 240, "stickiness 240 after the outage")
    wait_for(lambda: stickiness(sb) == "240", 60, "recovered after the remote came back")


def test_the_warm_crmsh_follows_the_dc(env: tuple[Sandbox, GitRepo]) -> None:
    """The DC moves (its node's cluster services stopped cleanly): the new DC's agent starts a warm crmsh,
    applies the next push, and once the old node is back only the DC keeps one."""
    sb, repo = env
    old = dc(sb)
    inits = {n: sb.init_pid(n) for n in NODES}
    sb.stop_services(old)
    try:
        others = [n for n in NODES if n != old]
        def new_dc() -> str | None:
            try:
                d = sb.cluster(others[0]).status().dc
            except Exception:  # crm_mon while the membership changes
                return None
            return d if d not in (None, old) else None

        new = wait_for(new_dc, 60, "a new DC")
        servers = wait_for(lambda: node_processes(inits, b"crm_server.py")[new], 30,
                           "a warm crmsh on the new DC")
        # The agent was an observer (nice 10) until now: the writer's crmsh runs at normal priority.
        assert nice_of(servers[0]) == 0
        set_stickiness_in_git(repo, 250, "stickiness 250 (new DC)")
        wait_for(lambda: stickiness(sb, new) == "250", 30, "applied by the new DC")
    finally:
        sb.start_services(old)
    sb.wait_healthy(timeout=90, expect_online=NODES)

    def seen_dc() -> str | None:  # the rejoining node may not know the DC for a moment
        try:
            return sb.cluster("kamailio01").status().dc
        except Exception:
            return None

    leader = wait_for(seen_dc, 60, "the DC, seen from kamailio01")
    wait_for(lambda: (f := node_processes(inits, b"crm_server.py"))[leader]
             and not any(f[n] for n in NODES if n != leader), 60, "only the DC keeps a warm crmsh")
    assert marker(sb).revision == repo.head()


def test_audit_verify_detects_a_tampered_row(env: tuple[Sandbox, GitRepo]) -> None:
    sb, _ = env
    db = sb.layout.node_dir("kamailio03") / "var-lib-ha-gitops" / "audit.db"
    code, out, err = cli(sb, "kamailio03", "audit", "verify")
    assert code == 0, out + err
    with sqlite3.connect(db) as conn:
        table = next(r[0] for r in conn.execute("select name from sqlite_master where type='table'")
                     if "event" in r[0] and "alembic" not in r[0])
        conn.execute(f"update {table} set summary = 'nothing happened' where id = 1")
    code, out, err = cli(sb, "kamailio03", "audit", "verify")
    assert code == 2
    assert "1" in out + err and "edited" in (out + err)
