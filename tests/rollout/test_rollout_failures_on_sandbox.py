"""corosync.conf rollouts that fail their verify, on the real 3-node sandbox with one agent per node.

Two failures the unit tests cannot show: a reload whose runtime value never appears in cmap (the
`[rollout] verify_timeout` runs out), and a cluster restart onto a file the cluster cannot run with.
Each must end with the previous file back and running on every node, the revision marked bad and the
audit trail saying why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import read_marker
from controller.errors import HaGitopsError
from controller.rollout import text_digest
from controller.sandbox.manager import Sandbox
from tests.agentslib import agents_sandbox
from tests.helpers import GitRepo, wait_for
from tests.rollout.test_rollout_on_sandbox import (
    CONF,
    FOLDER,
    NODES,
    applied_everywhere,
    audit,
    initial_corosync_reported,
    node_file,
    set_key,
    steps,
    trail,
)

pytestmark = pytest.mark.sandbox

POLICY = f"{FOLDER}/cluster.toml"
CRM = f"{FOLDER}/cib.crm"


def stickiness(sb: Sandbox, node: str = "kamailio01") -> str:
    r = sb.exec(node, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                       "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("rollout-failures", FOLDER, ready=initial_corosync_reported) as e:
        yield e


def marked_bad(sb: Sandbox, rev: str) -> bool:
    """Some node's CIB carries the bad mark (a node whose stack is down has no CIB to ask)."""
    for n in NODES:
        try:
            if read_marker(sb.cluster(n).read_cib()).corosync_bad == rev:
                return True
        except HaGitopsError:
            continue
    return False


def whole_and_quorate(sb: Sandbox) -> bool:
    st = sb.cluster("kamailio01").status()
    return bool(st.quorate and st.dc and all(n.online for n in st.nodes)
                and all(sb.cluster(n).quorum().quorate for n in NODES))


def rollout_policy(**rollout: str) -> str:
    """cluster.toml: a maintenance window open now, cluster restarts allowed, short rollout limits."""
    return ('[[maintenance_window]]\nname = "test"\ncron = "* * * * *"\nduration = "1h"\n\n'
            '[disruption]\nallow_cluster_restart = true\n\n[settle]\ntimeout = "20s"\n\n[rollout]\n'
            + "".join(f'{k} = "{v}"\n' for k, v in rollout.items()))


# ------------------------------------------------------------------------------------------------ tests
def test_reload_whose_runtime_never_matches_times_out_and_is_rolled_back(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = repo.read(CONF)
    # corosync reads 0 as "the default" for the timeouts it does not allow to be zero: `corosync -t`
    # accepts `join: 0`, the reload copies it into cmap (totem.join = 0), but corosync keeps running
    # with join 50 (runtime.config.totem.join = 50). The runtime never matches the file.
    text = set_key(good, "totem", "join", "0")
    # The same commit changes the CIB too: all or nothing, that part goes back with the rest.
    crm = repo.read(CRM)
    assert "resource-stickiness=100" in crm and stickiness(sb) == "100"
    rev = repo.commit({CONF: text, POLICY: rollout_policy(verify_timeout="5s"),
                       CRM: crm.replace("resource-stickiness=100", "resource-stickiness=150")},
                      "corosync: join 0 (corosync runs its default instead); stickiness 150")
    digest, prev = text_digest(text), text_digest(good)
    t0 = time.monotonic()
    wait_for(lambda: marked_bad(sb, rev), 60, "the revision marked bad", interval=0.5)
    t_bad = time.monotonic() - t0
    wait_for(lambda: all(node_file(sb, n) == good for n in NODES) and applied_everywhere(sb, prev), 60,
             "the previous corosync.conf restored on every node", interval=0.5)
    wait_for(lambda: steps(sb, digest, "rollback-reload"), 30, "the driver's final reload")
    wait_for(lambda: whole_and_quorate(sb), 30, "the cluster whole and quorate")
    elapsed = time.monotonic() - t0

    # Every node had the file and the reload before it failed: the failure is the runtime, not the file.
    assert sorted(e["node"] for e in steps(sb, digest, "write-file")) == NODES
    assert [e["node"] for e in steps(sb, digest, "reload")] == ["kamailio03"]
    events = trail(sb, digest, ("verify", "auto-rollback"))
    kinds = [e["kind"] for e in events]
    assert "verify" in kinds and "auto-rollback" in kinds, events
    print("trail:", [(e["node"], e["kind"], e["summary"][:80]) for e in events])
    for verify in (e for e in events if e["kind"] == "verify"):  # each node checks its own runtime
        assert verify["outcome"] == "failure"
        assert "runtime still differs 5s after the reload" in verify["error"], verify
        assert "runtime.config.totem.join = 50 (expected 0)" in verify["error"], verify
    rollbacks = [e for e in events if e["kind"] == "auto-rollback"]
    assert len(rollbacks) == 1, rollbacks  # one failure, one rollback (the node that marked it bad)
    assert rollbacks[0]["details"]["bad_revision"] == rev
    assert "runtime still differs" in (rollbacks[0]["error"] or "")
    # Each node put its previous file back and reloaded it; the runtime is the old one again.
    assert sorted(e["node"] for e in steps(sb, digest, "restored")) == NODES
    for node in NODES:
        assert sb.cluster(node).cmap_get("totem.join") is None
        assert sb.cluster(node).cmap_get("runtime.config.totem.join") == "50"
        assert sb.cluster(node).cmap_get("config.totemconfig_reload_in_progress") in (None, "0")
    # Not retried while git still says this revision.
    time.sleep(4)
    assert all(node_file(sb, n) == good for n in NODES)
    assert len(steps(sb, digest, "write-file")) == 3 and len(steps(sb, digest, "reload")) == 1
    # The CIB part of the revision was applied before the rollout, and is rolled back with it.
    cib_back = wait_for(lambda: [e for n in NODES for e in audit(sb, n) if e["kind"] == "auto-rollback"
                                 and (e.get("details") or {}).get("part") == "cib"
                                 and e["details"].get("bad_revision") == rev], 30,
                        "the CIB part's auto-rollback recorded")
    assert cib_back and "its CIB part is restored too" in cib_back[0]["summary"], cib_back
    assert all(stickiness(sb, n) == "100" for n in NODES)
    time.sleep(3)  # and it stays back: not taken for a hand edit of the head
    assert all(stickiness(sb, n) == "100" for n in NODES)
    # git is reverted (a newer commit with the same bad corosync.conf would be rolled out again): the
    # next test changes corosync.conf alone, from what runs
    back = repo.commit({CRM: crm, CONF: good}, "revert: join and stickiness as before")
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == back
             and applied_everywhere(sb, prev), 30, "the revert recorded")
    print(f"verify timeout: marked bad {t_bad:.1f}s after the commit, restored and quorate on every node "
          f"after {elapsed:.1f}s")


class PortHolder:
    """A process in a node's network namespace holding a UDP port (another service on the node)."""

    def __init__(self, sb: Sandbox, node: str, port: int) -> None:
        code = ("import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"s.bind(('0.0.0.0', {port}))\nprint('bound', flush=True)\ntime.sleep(3600)\n")
        # Own process group: nsenter forks python as its child, both must go at the end.
        self.proc = subprocess.Popen([*sb.prefix(node), sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "bound"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def test_cluster_restart_onto_a_file_that_cannot_run_is_rolled_back_on_every_node(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = next(node_file(sb, n) for n in NODES)  # what runs now (git may still hold a bad revision)
    assert all(node_file(sb, n) == good for n in NODES)
    # Moving corosync to UDP port 5420 (totem.interface.mcastport: a cluster-restart key) on nodes where
    # another service already holds that port: `corosync -t` binds no socket and accepts the file, every
    # node writes it, the cluster restarts together - and corosync exits at once on every node (it cannot
    # bind its port). The cluster is down until each node restores its previous file.
    text = good.replace("ttl: 1\n", "ttl: 1\nmcastport: 5420\n")
    assert text != good
    holders = [PortHolder(sb, n, 5420) for n in NODES]
    try:
        rev = repo.commit({CONF: text, POLICY: rollout_policy(verify_timeout="5s", rejoin_timeout="30s")},
                          "corosync: port 5420 (taken on every node)")
        digest, prev = text_digest(text), text_digest(good)
        t0 = time.monotonic()
        wait_for(lambda: steps(sb, digest, "cluster-restart"), 60, "the cluster restart request",
                 interval=0.5)
        t_restart = time.monotonic() - t0
        wait_for(lambda: len({e["node"] for e in steps(sb, digest, "restored")}) == 3, 120,
                 "every node to restore its previous corosync.conf", interval=1)
        wait_for(lambda: whole_and_quorate(sb), 60, "the cluster whole and quorate again", interval=1)
        wait_for(lambda: applied_everywhere(sb, prev) and marked_bad(sb, rev), 60,
                 "every node reporting its previous file, the revision marked bad", interval=1)
        elapsed = time.monotonic() - t0
    finally:
        for h in holders:
            h.stop()

    for node in NODES:
        assert node_file(sb, node) == good
        assert sb.cluster(node).cmap_get("totem.interface.0.mcastport") != "5420"
    # The standby node drove it; every node wrote the file first, then all restarted together.
    assert [e["node"] for e in steps(sb, digest, "cluster-restart")] == ["kamailio03"]
    assert sorted(e["node"] for e in steps(sb, digest, "write-file")) == NODES
    events = trail(sb, digest, ("verify", "auto-rollback"))
    for e in trail(sb, digest, ("verify", "auto-rollback", "rollout-step", "error")):
        print(e["time"], e["node"], e["kind"], e["summary"][:150], (e["error"] or "")[:200])
    verifies = [e for e in events if e["kind"] == "verify"]
    rollbacks = [e for e in events if e["kind"] == "auto-rollback"]
    assert verifies and rollbacks, events
    for e in verifies:
        assert e["outcome"] == "failure" and "restart with the new file failed" in (e["error"] or ""), e
    assert all(e["details"]["bad_revision"] == rev for e in rollbacks)
    # Every node failed its restart and restored its own file first (out of the cluster, it could not
    # mark the revision); back, each marks it: one mark is first, so one auto-rollback, the others' finding
    # is their verify event.
    assert len(rollbacks) == 1, rollbacks
    assert len(verifies) == 3 and sorted(e["node"] for e in verifies) == NODES, verifies
    restored = steps(sb, digest, "restored")
    assert sorted({e["node"] for e in restored}) == NODES
    assert all("restarted" in e["summary"] for e in restored)  # a restart, not a reload, brought it back
    st = sb.cluster("kamailio01").status()
    assert [n.name for n in st.nodes if n.standby] == ["kamailio03"]  # nobody left in standby
    # Not retried while git still says this revision.
    time.sleep(5)
    assert all(node_file(sb, n) == good for n in NODES)
    assert len(steps(sb, digest, "cluster-restart")) == 1
    assert len(steps(sb, digest, "write-file")) == 3
    print(f"cluster-restart rollback: restart requested {t_restart:.1f}s after the commit; previous file "
          f"restored, reported and the cluster quorate {elapsed:.1f}s after the commit")
