"""What `plan` says is what the agents do, on a real cluster (issue 9's failures, each as it must behave).

Three agents follow a git repository whose cluster.toml protects the PROXY01 group outside a (closed)
maintenance window. Every test leaves the repository's head valid and applied.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from tests.agentslib import PROTECTED_OUTSIDE_WINDOW, agent_status, agents_sandbox, audit, cli, dc, set_fault
from tests.conftest import sandbox_repo_dir
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

REPO = sandbox_repo_dir("truth")
FOLDER = "kamailio"
CRM, CONF, POLICY = f"{FOLDER}/cib.crm", f"{FOLDER}/corosync.conf", f"{FOLDER}/cluster.toml"
NODES = ["kamailio01", "kamailio02", "kamailio03"]
AGENT_TOML = "/etc/ha-gitops/agent.toml"
PROTECTED = PROTECTED_OUTSIDE_WINDOW + '''
[settle]
timeout = "40s"
'''


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Sandbox, GitRepo]]:
    try:
        with agents_sandbox("truth", FOLDER, extra={POLICY: PROTECTED},
                            message="kamailio, PROXY01 protected") as e:
            yield e
    finally:  # the folder copies of folder_with
        for copy in REPO.parent.glob(f"{REPO.name}-*"):
            shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture
def env(cluster: tuple[Sandbox, GitRepo]) -> Iterator[tuple[Sandbox, GitRepo]]:
    """The cluster, and after the test the files it started with back at the head, in force."""
    sb, repo = cluster
    files = {name: repo.read(name) for name in (CRM, CONF, POLICY)}
    yield cluster
    if any(repo.read(name) != text for name, text in files.items()):
        repo.commit(files, "back to the files the test started with")
    wait_applied(sb, repo)


def event(sb: Sandbox, kind: str, sha: str | None = None, node: str | None = None) -> dict | None:
    return next((e for e in audit(sb, node or dc(sb)) if e["kind"] == kind
                 and (sha is None or (e["commit"] and e["commit"]["sha"] == sha))), None)


def stickiness(sb: Sandbox) -> str:
    r = sb.exec("kamailio01", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                               "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


def node_conf(sb: Sandbox, node: str) -> str:
    return (sb.layout.node_dir(node) / "etc-corosync" / "corosync.conf").read_text()


def folder_with(repo: GitRepo, name: str, changes: dict[str, str]) -> str:
    """A copy of the repository's cluster folder with `changes`, where every node sees it."""
    dest = REPO.parent / f"{REPO.name}-{name}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in ("cib.crm", "corosync.conf", "cluster.toml"):
        (dest / f).write_text(changes.get(f, repo.read(f"{FOLDER}/{f}")))
    return str(dest)






def wait_applied(sb: Sandbox, repo: GitRepo) -> None:
    """The DC's agent has the head and nothing is pending (written now, or already what the cluster holds)."""
    head = repo.head()
    wait_for(lambda: (a := agent_status(sb, dc(sb))).get("source_revision") == head
             and a.get("outcome") in ("no-change", "applied"), 60, "the head in force")


# ------------------------------------------------------------------------------------------------ plan
def test_plan_exit_codes_and_reasons_match_what_the_agent_does(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    node = dc(sb)
    same = folder_with(repo, "same", {})
    code, out, _ = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", same)
    assert code == 0 and "Decision: no-change" in out, out
    # A node (or operator) without an audit trail yet plans all the same.
    etc = sb.layout.node_dir(node) / "etc-ha-gitops"
    agent_toml = (etc / "agent.toml").read_text()
    (etc / "no-trail.toml").write_text(re.sub(r"(?m)^audit_url = .*$",
                                              'audit_url = "sqlite:////var/lib/ha-gitops/no-such-trail.db"',
                                              agent_toml))
    code, out, err = cli(sb, node, "plan", "--config", "/etc/ha-gitops/no-trail.toml", "--dir", same)
    assert code == 0 and "Decision: no-change" in out, out + err
    crm = repo.read(CRM)
    typo = folder_with(repo, "typo", {"cib.crm": crm + "primitve broken-typo Dummy\n"})
    code, out, err = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", typo)
    assert code == 3 and "[invalid]" in out and "primitve" in out, out + err
    moved = folder_with(repo, "vip", {"cib.crm": crm.replace("ip=10.220.1.25", "ip=10.220.1.26")})
    for fmt, marks in (("text", ["Decision: refuse", "[policy]", "[protect]", "PROXY01"]),
                       ("markdown", ["⛔ **refuse**", "`policy`", "`protect`", "**Predicted impact**"])):
        code, out, err = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", moved, "--format", fmt)
        assert code == 3 and all(m in out for m in marks), out + err
    code, out, _ = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", moved, "--format", "json")
    data = json.loads(out)
    assert (code, data["verdict"], data["exit_code"]) == (3, "refuse", 3)
    assert [r["code"] for r in data["reasons"]] == ["policy"]
    assert {v["rule"] for v in data["reasons"][0]["violations"]} == {"protect"}
    sticky = folder_with(repo, "sticky", {"cib.crm": crm.replace("resource-stickiness=100",
                                                                  "resource-stickiness=110")})
    code, out, _ = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", sticky)
    assert code == 1 and "Decision: apply" in out, out
    # The agent does what the plan said: the refused change is refused, with the same reason.
    sha = repo.commit({CRM: crm.replace("ip=10.220.1.25", "ip=10.220.1.26")}, "move the VIP")
    refused = wait_for(lambda: event(sb, "refused", sha), 40, "the refusal")
    assert "protect" in refused["error"] and "PROXY01" in refused["error"]


def test_a_refused_cib_part_holds_the_corosync_part_too(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    before = {n: node_conf(sb, n) for n in NODES}
    crm, conf = repo.read(CRM), repo.read(CONF)
    token = re.sub(r"token: \d+", "token: 3250", conf)
    assert token != conf
    sha = repo.commit({CRM: crm.replace("ip=10.220.1.25", "ip=10.220.1.26"), CONF: token},
                      "VIP move (refused) with a token change")
    refused = wait_for(lambda: event(sb, "refused", sha), 40, "the refusal")
    assert "protect" in refused["error"]
    assert refused["details"]["corosync_class"] == "reload"
    time.sleep(8)  # several passes of every agent
    assert {n: node_conf(sb, n) for n in NODES} == before  # no node wrote the refused corosync.conf
    cib = sb.cluster("kamailio01").read_cib()
    assert not cib.xpath("//nvpair[@name='ha-gitops-corosync' and starts-with(@value, $d)]",
                         d=refused["details"]["digest"])
    assert read_marker(cib).revision != sha


# ------------------------------------------------------------------------------------------------ apply
def test_apply_once_refuses_a_corosync_change_up_front(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    conf = repo.read(CONF)
    folder = folder_with(repo, "token", {"corosync.conf": re.sub(r"token: \d+", "token: 3500", conf),
                                         "cib.crm": repo.read(CRM).replace("resource-stickiness=100",
                                                                           "resource-stickiness=111")})
    epoch = sb.cluster("kamailio01").read_cib().get("epoch")
    code, out, err = cli(sb, dc(sb), "apply", "--once", "--config", AGENT_TOML, "--dir", folder)
    assert code == 3 and out.startswith("refused"), out + err
    assert "[unsupported]" in out and "ha-gitops agent" in out
    assert sb.cluster("kamailio01").read_cib().get("epoch") == epoch  # not even the CIB part
    assert stickiness(sb) == "100"


def test_saved_plan_is_applied_as_is_and_refused_once_the_cluster_moved(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    node = dc(sb)
    folder = folder_with(repo, "saved", {"cib.crm": repo.read(CRM).replace("resource-stickiness=100",
                                                                            "resource-stickiness=130")})
    plan_file = str(REPO.parent / f"{REPO.name}-plan.json")
    code, out, err = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", folder, "--out", plan_file)
    assert code == 1, out + err
    sb.exec(node, ["crm_attribute", "-t", "crm_config", "-n", "cluster-recheck-interval", "-v", "3min"],
            check=True)  # the cluster moves: the saved plan no longer holds
    code, out, err = cli(sb, node, "apply", "--plan", plan_file, "--config", AGENT_TOML)
    assert code == 3 and "[stale-plan]" in out and "live CIB version" in out, out + err
    assert stickiness(sb) == "100"
    wait_for(lambda: sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n",
                                            "cluster-recheck-interval", "-G", "-q"]).returncode != 0, 30,
             "the hand edit undone as drift")
    code, out, err = cli(sb, node, "plan", "--config", AGENT_TOML, "--dir", folder, "--out", plan_file)
    assert code == 1, out + err
    code, out, err = cli(sb, node, "apply", "--plan", plan_file, "--config", AGENT_TOML)
    assert code == 0 and out.startswith("applied"), out + err
    applied = next(e for e in audit(sb, node)
                   if e["kind"] == "apply" and e["details"].get("trigger") == "cli")  # not a backfilled one
    assert [(d["kind"], d["action"]) for d in applied["diff"]] == [("rsc_default", "changed")]
    assert "130" in json.dumps(applied["diff"])
    # The agents follow git again (the folder is not the branch): the head's 100 comes back.
    wait_for(lambda: stickiness(sb) == "100", 40, "the branch's value restored")


# ------------------------------------------------------------------------------------------------ drift
def test_hand_edit_while_the_head_is_refused_is_recorded_and_undone(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    bad = repo.commit({CRM: crm + "primitve broken-typo Dummy\n"}, "typo")
    wait_for(lambda: event(sb, "refused", bad), 40, "the invalid head refused")
    sb.exec("kamailio02", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "7"], check=True)
    detected = wait_for(lambda: next((e for e in audit(sb, dc(sb)) if e["kind"] == "drift-detected"
                                      and e["details"].get("target") == "last-write"), None), 30,
                        "drift recorded while the head is refused")
    assert detected["details"]["origin"]["update-client"] == "crm_attribute"
    assert "invalid" in detected["details"]["reasons"]
    wait_for(lambda: stickiness(sb) == "100", 30, "corrected towards the last write")


# ------------------------------------------------------------------------------------------------ failures
def test_a_failed_auto_rollback_is_recorded_and_the_revision_marked_bad(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    set_fault(sb, {"fail": {"auto-rollback": "the CIB refused the restore"}})
    try:
        broken = ("primitive broken-dummy ocf:pacemaker:Dummy \\\n\tparams state=/nonexistent/dir/state \\\n"
                  "\tmeta migration-threshold=1\n")
        sha = repo.commit({CRM: crm + broken}, "a resource that cannot start")
        failed = wait_for(lambda: next((e for e in audit(sb, dc(sb)) if e["kind"] == "error"
                                        and e["details"].get("stage") == "auto-rollback"), None), 120,
                          "the failed auto-rollback recorded")
        assert failed["details"]["reason"] == "AutoRollbackFailed" and failed["details"]["marked_bad"]
        assert "injected fault at auto-rollback" in failed["error"]
        assert read_marker(sb.cluster("kamailio01").read_cib()).bad == sha
        verify = event(sb, "verify", sha)
        assert verify is not None and verify["details"]["reason"] == "HealthCheckFailed"
        _, out, _ = cli(sb, dc(sb), "status", "--config", AGENT_TOML)
        assert "last failure: auto-rollback AutoRollbackFailed" in out, out
        assert agent_status(sb, dc(sb))["outcome"] in ("bad-revision", "error")
        # An operator's apply of the bad revision says so and exits non-zero.
        code, out, _ = cli(sb, dc(sb), "apply", "--once", "--config", AGENT_TOML)
        assert code == 3 and out.startswith("bad-revision") and "[bad-revision]" in out, out
    finally:
        set_fault(sb, {})


def test_hand_edit_while_a_rollback_pins_the_revision_is_recorded_and_undone(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    sha = repo.commit({CRM: crm.replace("resource-stickiness=100", "resource-stickiness=140")}, "140")
    applied = wait_for(lambda: event(sb, "apply", sha), 40, "140 applied")
    node = dc(sb)
    # An operator's node without repo_url (the agent's settings are elsewhere): rollback and status work.
    (sb.layout.node_dir(node) / "etc-ha-gitops" / "no-repo.toml").write_text('log_level = "info"\n')
    no_repo = "/etc/ha-gitops/no-repo.toml"
    code, out, err = cli(sb, node, "rollback", str(applied["id"]), "--config", no_repo)
    assert code == 0 and out.startswith("rolled-back"), out + err
    code, out, err = cli(sb, node, "status", "--config", no_repo)
    assert code == 0 and f"pinned at {sha[:12]}" in out, out + err
    assert stickiness(sb) == "100" and read_marker(sb.cluster("kamailio01").read_cib()).pinned == sha
    sb.exec("kamailio03", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "9"], check=True)
    detected = wait_for(lambda: next((e for e in audit(sb, dc(sb)) if e["kind"] == "drift-detected"
                                      and "pinned" in e["details"].get("reasons", [])), None), 30,
                        "drift recorded while pinned")
    assert detected["details"]["target"] == "last-write"
    wait_for(lambda: stickiness(sb) == "100", 30, "corrected towards the rolled-back configuration")
    assert read_marker(sb.cluster("kamailio01").read_cib()).pinned == sha  # the pin holds
    code, _, err = cli(sb, node, "resume", "--config", AGENT_TOML)
    assert code == 0, err
    wait_for(lambda: stickiness(sb) == "140", 30, "the head applied after resume")


def test_a_fence_during_verify_is_named_in_the_verify_event(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    writer = dc(sb)
    victim = next(n for n in NODES if n != writer)
    # A start that outlives its timeout, with on-fail=fence, on one node only: crm_simulate predicts a
    # start (nothing to refuse); Pacemaker fences the node when the start times out.
    slow = (f"primitive slow-start ocf:pacemaker:Dummy \\\n\tparams op_sleep=6 \\\n"
            f"\top start timeout=2s interval=0 on-fail=fence\n"
            f"location slow-start-only-{victim} slow-start rule -inf: #uname ne {victim}\n")
    sha = repo.commit({CRM: crm + slow}, f"a resource whose start fences {victim}")
    verify = wait_for(lambda: event(sb, "verify", sha, node=writer), 150, "the verify event")
    fenced = verify["details"]["fenced"]
    assert [f["target"] for f in fenced] == [victim], verify
    assert victim in verify["summary"] and "reboot" in verify["summary"]
    wait_for(lambda: event(sb, "auto-rollback", sha, node=writer), 60, "the auto-rollback")
    wait_for(lambda: (n := sb.cluster(writer).status().node(victim)) is not None and n.online, 120,
             f"{victim} back after its reboot")


def test_a_typo_in_a_resource_agent_is_refused_before_anything_runs(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    typo = crm + "primitive extra-typo ocf:heartbeat:NoSuchAgent\n"
    folder = folder_with(repo, "nosuchagent", {"cib.crm": typo})
    code, out, _ = cli(sb, dc(sb), "plan", "--config", AGENT_TOML, "--dir", folder)
    assert code == 3 and "ocf:heartbeat:NoSuchAgent does not exist" in out and "extra-typo" in out, out
    code, out, _ = cli(sb, dc(sb), "validate", folder, "--sandbox")
    assert code == 2 and "NoSuchAgent does not exist" in out, out
    fences = sb.exec("kamailio01", ["stonith_admin", "--history", "*", "--output-as=xml"]).stdout
    sha = repo.commit({CRM: typo}, "a resource agent typo")
    refused = wait_for(lambda: event(sb, "refused", sha), 40, "the refusal")
    assert "ocf:heartbeat:NoSuchAgent does not exist" in refused["error"]
    time.sleep(3)
    cib = sb.cluster("kamailio01").read_cib()
    assert cib.find(".//primitive[@id='extra-typo']") is None
    assert sb.exec("kamailio01", ["stonith_admin", "--history", "*", "--output-as=xml"]).stdout.count(
        "fence_event") == fences.count("fence_event")  # nobody fenced


def test_a_new_dc_writes_the_newest_revision_not_its_cached_one(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    crm = repo.read(CRM)
    old_dc = dc(sb)
    others = [n for n in NODES if n != old_dc]
    sha = repo.commit({CRM: crm.replace("resource-stickiness=100", "resource-stickiness=150")}, "150")
    # The DC applies it at once; the observers would look 2.5 s later. The DC dies before they do.
    wait_for(lambda: stickiness_via(sb, others[0]) == "150", 20, "the DC's apply", interval=0.05)
    sb.poweroff(old_dc)
    try:
        # Until a new DC has settled in, the value must never go back to the older revision's 100.
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen.add(stickiness_via(sb, others[0]))
            time.sleep(0.2)
        new_dc = dc(sb, via=others[0])
        assert new_dc in others
        assert seen <= {"150", ""}, seen  # "" while the CIB is being re-elected
        assert read_marker(sb.cluster(others[0]).read_cib()).revision == sha
    finally:
        sb.start(old_dc)
        sb.wait_healthy(timeout=90, expect_online=NODES)


def stickiness_via(sb: Sandbox, node: str) -> str:
    r = sb.exec(node, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                       "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()
