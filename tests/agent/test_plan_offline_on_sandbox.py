"""Plan off the cluster, against the real one: `plan --dir DIR` on the DC's node and `plan --live SNAPSHOT
--dir DIR` on the host (outside the sandbox, where no cluster runs) give the same verdict, reasons, CIB
and corosync.conf changes, impact and exit code.

The reference cluster with its agents (PROXY01 protected outside a closed maintenance window); the
folders planned are copies of the repository's with a change, never committed, so the cluster stays as
it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.manager import Sandbox
from tests.agentslib import PROTECTED_OUTSIDE_WINDOW, agents_sandbox, cli, dc
from tests.conftest import REPO as CHECKOUT
from tests.conftest import sandbox_repo_dir
from tests.helpers import HA_GITOPS, GitRepo, wait_for

pytestmark = pytest.mark.sandbox

REPO = sandbox_repo_dir("offline")
FOLDER = "kamailio"
AGENT_TOML = "/etc/ha-gitops/agent.toml"
SNAPSHOT = REPO.parent / f"{REPO.name}-snapshot.json"
# What must be the same on and off the cluster (the decision JSON `plan --format json` prints).
SAME_PLAN = ("cib_changes", "corosync_changes", "corosync_class", "node_order", "substitutions", "steps",
             "impact")


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("offline", FOLDER, extra={f"{FOLDER}/cluster.toml": PROTECTED_OUTSIDE_WINDOW},
                        message="kamailio, PROXY01 protected") as env:
        yield env
    SNAPSHOT.unlink(missing_ok=True)
    for name in ("both", "same", "vip"):
        shutil.rmtree(REPO.parent / f"{REPO.name}-{name}", ignore_errors=True)


def folder_with(repo: GitRepo, name: str, change: dict[str, tuple[str, str]]) -> Path:
    """A copy of the cluster folder, each file's (old, new) replaced once, where the nodes see it too."""
    dest = REPO.parent / f"{REPO.name}-{name}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("cib.crm", "corosync.conf", "cluster.toml"):
        text = repo.read(f"{FOLDER}/{f}")
        if f in change:
            old, new = change[f]
            assert old in text, (f, old)
            text = text.replace(old, new)
        (dest / f).write_text(text)
    return dest


def plan_on_node(sb: Sandbox, folder: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(sb, dc(sb), "plan", "--config", AGENT_TOML, "--dir", str(folder), "--format", "json")
    assert code in (0, 1, 3), out + err
    return code, json.loads(out)


def plan_on_host(folder: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """`plan --live SNAPSHOT` as a CI runner runs it: on this machine, no agent configuration, no cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HA_GITOPS_CONFIG", "CIB_"))}
    r = subprocess.run([*HA_GITOPS, "plan", "--live", str(SNAPSHOT), "--dir", str(folder), "--format", "json",
                        *extra], capture_output=True, text=True, timeout=300, cwd=CHECKOUT, env=env)
    assert r.returncode in (0, 1, 3), r.stdout + r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def assert_same(node: tuple[int, dict[str, Any]], host: tuple[int, dict[str, Any], str]) -> None:
    (code_n, on), (code_h, off, _) = node, host
    assert (code_h, off["verdict"], off["exit_code"]) == (code_n, on["verdict"], on["exit_code"])
    assert off["reasons"] == on["reasons"]
    for key in SAME_PLAN:
        assert off["plan"][key] == on["plan"][key], key
    assert off["basis"] == on["basis"]  # the same revision, live CIB version and corosync.conf
    assert off["plan"]["notes"] == [*on["plan"]["notes"], off["plan"]["notes"][-1]]
    assert off["plan"]["notes"][-1].startswith("planned off the cluster, against the snapshot of")
    assert [f for f in off["findings"] if f["severity"] == "error"] == \
        [f for f in on["findings"] if f["severity"] == "error"]


def settled(sb: Sandbox) -> None:
    """No transition running and the configuration epoch still for a few seconds: right after start-up
    the cluster and the agents' first passes still write, and a plan is as of the CIB it read."""
    node = dc(sb)

    def epoch() -> str:
        head = sb.cluster(node).read_cib_head()
        return f"{head.get('admin_epoch')}.{head.get('epoch')}"

    def still() -> bool:
        sb.exec(node, ["crm_resource", "--wait", "--timeout=60s"], timeout=90)
        before = epoch()
        time.sleep(3)
        return epoch() == before

    wait_for(still, 120, "the cluster settled")


def take_snapshot(sb: Sandbox) -> dict[str, Any]:
    settled(sb)
    SNAPSHOT.unlink(missing_ok=True)
    code, out, err = cli(sb, dc(sb), "snapshot", "--config", AGENT_TOML, "--out", str(SNAPSHOT))
    assert code == 0, out + err
    assert "as sensitive" in err or "cibadmin -Q" in err  # the operator is told what the file holds
    data: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return data


def test_the_offline_plan_is_the_plan_on_the_node(cluster: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = cluster
    snap = take_snapshot(sb)
    assert stat.S_IMODE(SNAPSHOT.stat().st_mode) == 0o600  # it holds the CIB
    assert snap["node"] == dc(sb) and "<status" in snap["cib"] and "totem" in snap["corosync_conf"]
    assert "IPaddr2" in snap["agents"]["ocf"]["heartbeat"] and snap["agents"]["systemd"] is None
    assert snap["settings"]["substitute"][0]["match_class"] == "systemd"  # the node's agent.toml
    assert snap["versions"]["pacemaker"] and snap["versions"]["crmsh"]
    assert snap["cmap"].get("runtime.config.totem.token")
    assert snap["last_write"]["event"]  # the initial sync's configuration, from the DC's trail

    conf = repo.read(f"{FOLDER}/corosync.conf")
    token = re.search(r"token: \d+", conf)
    assert token is not None
    both = folder_with(repo, "both", {"cib.crm": ("resource-stickiness=100", "resource-stickiness=110"),
                                      "corosync.conf": (token.group(0), "token: 3250")})
    on_node = plan_on_node(sb, both)
    assert on_node[0] == 1 and on_node[1]["verdict"] == "apply", on_node
    assert [c["id"] for c in on_node[1]["plan"]["cib_changes"]] == ["resource-stickiness"]
    coro = on_node[1]["plan"]["corosync_changes"]
    assert [(c["path"], c["new"]) for c in coro] == [("totem.token", "3250")]
    assert on_node[1]["plan"]["impact"] is not None  # crm_simulate ran on the node
    off = plan_on_host(both)
    assert_same(on_node, off)

    same = folder_with(repo, "same", {})
    on_node = plan_on_node(sb, same)
    assert on_node[0] == 0 and on_node[1]["verdict"] == "no-change", on_node
    assert_same(on_node, plan_on_host(same))


def test_a_refused_change_exits_3_off_the_cluster_too(cluster: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = cluster
    if not SNAPSHOT.exists():
        take_snapshot(sb)
    moved = folder_with(repo, "vip", {"cib.crm": ("ip=10.220.1.25", "ip=10.220.1.26")})
    on_node = plan_on_node(sb, moved)
    assert on_node[0] == 3 and [r["code"] for r in on_node[1]["reasons"]] == ["policy"], on_node
    assert {v["rule"] for v in on_node[1]["reasons"][0]["violations"]} == {"protect"}
    off = plan_on_host(moved)
    assert_same(on_node, off)
    # The text a pull-request comment shows off the cluster says the same.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HA_GITOPS_CONFIG")}
    r = subprocess.run([*HA_GITOPS, "plan", "--live", str(SNAPSHOT), "--dir", str(moved), "--format",
                        "markdown"], capture_output=True, text=True, timeout=300, cwd=CHECKOUT, env=env)
    assert r.returncode == 3 and "`protect`" in r.stdout and "PROXY01" in r.stdout, r.stdout + r.stderr
