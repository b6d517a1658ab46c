"""Safe order for CIB changes on a real cluster: disruption policy, stop-before-delete, auto-rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from tests.agentslib import PROTECTED_OUTSIDE_WINDOW, agents_sandbox, audit, dc, set_fault
from tests.helpers import HA_GITOPS, GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "kamailio"
CRM = f"{FOLDER}/cib.crm"
POLICY = f"{FOLDER}/cluster.toml"

CLOSED_WINDOW = PROTECTED_OUTSIDE_WINDOW
OPEN_WINDOW = '''
[[maintenance_window]]
name = "always"
cron = "* * * * *"
duration = "2m"

[disruption]
protect = ["PROXY01"]
'''


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("safe", FOLDER, extra={POLICY: CLOSED_WINDOW},
                        message="kamailio with a disruption policy") as e:
        yield e





def vip(sb: Sandbox) -> str:
    r = sb.exec("kamailio01", ["crm_resource", "-r", "IP-HA-01", "-g", "ip"])
    return r.stdout.strip()


def by_commit(sb: Sandbox, sha: str, kind: str) -> dict | None:
    return next((e for e in audit(sb, dc(sb)) if e["kind"] == kind and e["commit"]
                 and e["commit"]["sha"] == sha), None)


def test_restart_of_protected_group_refused_outside_window_and_applied_inside(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = repo.read(CRM).replace("ip=10.220.1.25", "ip=10.220.1.26")
    sha = repo.commit({CRM: text}, "move the VIP to .26")
    refused = wait_for(lambda: by_commit(sb, sha, "refused"), 30, "refusal")
    assert "protect" in refused["error"] and "PROXY01" in refused["error"]
    # The prediction is in the event: the VIP and the group member after it restart.
    impact = {(r["resource"], r["action"]) for r in refused["details"]["impact"]["resources"]}
    assert ("IP-HA-01", "restart") in impact and ("KAMAILIO01", "restart") in impact
    assert vip(sb) == "10.220.1.25"
    # Inside a maintenance window the same change goes through.
    sha2 = repo.commit({POLICY: OPEN_WINDOW}, "open a maintenance window")
    wait_for(lambda: vip(sb) == "10.220.1.26", 30, "VIP moved inside the window")
    applied = wait_for(lambda: by_commit(sb, sha2, "apply"), 20, "apply event")
    assert any(r["resource"] == "IP-HA-01" and r["action"] == "restart"
               for r in applied["details"]["impact"]["resources"])
    wait_for(lambda: sb.exec("kamailio03", ["ping", "-c1", "-W1", "10.220.1.26"]).returncode == 0, 30,
             "the new VIP answers")


def test_removed_resource_is_stopped_before_it_is_deleted(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    base = repo.read(CRM)
    extra = ("primitive extra-dummy ocf:pacemaker:Dummy \\\n\top monitor interval=10s\n"
             "location extra-prefers-02 extra-dummy 50: kamailio02\n")
    repo.commit({CRM: base + extra}, "add extra-dummy")
    wait_for(lambda: (r := sb.cluster("kamailio01").status().resource("extra-dummy")) and r.active, 40,
             "extra-dummy running")
    sha = repo.commit({CRM: base}, "remove extra-dummy")
    ev = wait_for(lambda: by_commit(sb, sha, "apply"), 60, "the removal applied")
    assert ev["details"]["stopped_first"] == ["extra-dummy"]
    cib = sb.cluster("kamailio01").read_cib()
    assert cib.find(".//primitive[@id='extra-dummy']") is None
    assert cib.find(".//rsc_location[@id='extra-prefers-02']") is None  # its constraint went with it
    # Nothing orphaned or still running.
    assert sb.cluster("kamailio01").status().resource("extra-dummy") is None


def test_change_that_fails_to_start_is_rolled_back_and_marked_bad(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    base = repo.read(CRM)
    broken = ("primitive broken-dummy ocf:pacemaker:Dummy \\\n\tparams state=/nonexistent/dir/state \\\n"
              "\tmeta migration-threshold=1\n")
    sha = repo.commit({CRM: base + broken}, "add a resource that cannot start")
    rollback = wait_for(lambda: by_commit(sb, sha, "auto-rollback"), 120, "auto-rollback")
    assert rollback["details"]["bad_revision"] == sha
    verify = by_commit(sb, sha, "verify")
    assert verify is not None and verify["outcome"] == "failure" and "broken-dummy" in verify["summary"]
    cib = sb.cluster("kamailio01").read_cib()
    assert cib.find(".//primitive[@id='broken-dummy']") is None
    assert read_marker(cib).bad == sha
    # Not retried: the agents report the revision as bad.
    wait_for(lambda: json.loads(sb.exec(dc(sb), [*HA_GITOPS, "status", "--format", "json"]).stdout)
             ["agent"]["outcome"] == "bad-revision", 30, "bad-revision reported")
    # A newer commit is applied again.
    good = repo.commit({CRM: base.replace("resource-stickiness=100", "resource-stickiness=120")},
                       "drop the broken resource, stickiness 120")
    wait_for(lambda: by_commit(sb, good, "apply"), 40, "newer commit applied")
    assert read_marker(sb.cluster("kamailio01").read_cib()).bad is None




def first_verify(sb: Sandbox, node: str, sha: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = next((e for e in reversed(audit(sb, node)) if e["kind"] == "verify"
                                         and e["commit"] and e["commit"]["sha"] == sha), None)
    return found


def test_a_node_lost_during_verify_is_not_blamed_on_the_change(env: tuple[Sandbox, GitRepo]) -> None:
    """The soak's false blame: a valid commit whose verify window sees a node die was rolled back and
    marked bad. Now the verify is inconclusive, the revision stays, and the writer re-checks it once the
    fenced node is back."""
    sb, repo = env
    writer = dc(sb)
    victim = next(n for n in ("kamailio01", "kamailio02") if n != writer)
    pid = sb.init_pid(victim)
    # The writer pauses between its write and its verify, long enough for corosync to notice the loss.
    set_fault(sb, {"after-write": 12})
    try:
        # The Dummy starts away from the victim: a node the change acts on that is fenced is the change's
        # (an on-fail=fence escalation), a node it does not touch is a fault.
        sha = repo.commit({CRM: repo.read(CRM) + "primitive verify-dummy ocf:pacemaker:Dummy\n"
                           f"location verify-dummy-not-{victim} verify-dummy -inf: {victim}\n"},
                          "add a Dummy (its verify will see a node die)")
        wait_for(lambda: read_marker(sb.cluster(writer).read_cib()).revision == sha, 60, "the write")
        sb.poweroff(victim)  # inside the verify window
        inconclusive = wait_for(lambda: first_verify(sb, writer, sha), 120, "the verify of the commit")
    finally:
        set_fault(sb, {})
    assert inconclusive["outcome"] == "inconclusive", json.dumps(inconclusive, indent=1)
    assert victim in inconclusive["details"]["left"]
    assert all(p["attribution"] != "change" for p in inconclusive["details"]["problems"])
    assert not [e for e in audit(sb, writer) if e["kind"] == "auto-rollback"
                and e["details"].get("bad_revision") == sha], json.dumps(
        [e["details"] for e in audit(sb, writer) if e["kind"] == "verify"], indent=1)
    assert read_marker(sb.cluster(writer).read_cib()).bad is None
    # The survivors fence the victim (a reboot); once it is back, the writer re-checks: healthy.
    wait_for(lambda: sb.request("status")["nodes"][victim]["init_pid"] not in (None, pid), 120,
             f"{victim} rebooted by the fencing")
    sb.wait_healthy(timeout=120, expect_online=("kamailio01", "kamailio02", "kamailio03"))
    rechecked = wait_for(lambda: next((e for e in audit(sb, writer) if e["kind"] == "verify"
                                       and e["details"].get("rechecked")
                                       and e["commit"] and e["commit"]["sha"] == sha), None),
                         120, "the re-check once the cluster is whole")
    assert rechecked["outcome"] == "success", json.dumps(rechecked, indent=1)
    assert "re-checked once the cluster was whole" in rechecked["summary"]
    cib = sb.cluster(writer).read_cib()
    assert cib.find(".//primitive[@id='verify-dummy']") is not None and read_marker(cib).revision == sha
