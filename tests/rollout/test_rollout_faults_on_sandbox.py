"""corosync.conf rollouts through the faults the chaos soak found (issue 10), on the real 3-node sandbox.

- A revert: token 3000 -> 3250 -> 3000 -> 3250 must roll out each time (the verify clock of an earlier
  rollout of the same file once failed the later one at once).
- The reload driver (kamailio03, the standby node, first in the order) killed with SIGKILL right after
  writing its file: restarted by its supervisor, it issues the reload.
- The driver hung right after writing its file: the next node in the order takes the reload over.
- A node whose agent hangs before writing its file: nobody can write it for it; the rollout is
  abandoned, the nodes that wrote restore their previous file, and the audit trail says so.
Every test ends with each node's runtime totem.token (cmap) equal to its file's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import read_marker
from controller.errors import HaGitopsError
from controller.rollout import ATTR_FILE, text_digest
from controller.sandbox.manager import Sandbox
from tests.agentslib import agents_sandbox, set_fault
from tests.helpers import GitRepo, wait_for
from tests.rollout.test_rollout_on_sandbox import (
    CONF,
    FOLDER,
    NODES,
    applied_everywhere,
    attrs,
    initial_corosync_reported,
    node_file,
    set_key,
    steps,
    trail,
)

pytestmark = pytest.mark.sandbox

POLICY = f"{FOLDER}/cluster.toml"
DRIVER = "kamailio03"  # standby: first in the rollout order


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("rollout-faults", FOLDER, ready=initial_corosync_reported) as e:
        yield e
        for n in NODES:
            set_fault(e[0], {}, n)




def file_token(sb: Sandbox, node: str) -> str:
    m = re.search(r"^\s*token:\s*(\d+)", node_file(sb, node), re.M)
    assert m, node_file(sb, node)
    return m.group(1)


def runtime_matches_file(sb: Sandbox) -> dict[str, tuple[str, str | None, str | None]]:
    """Node -> (its file's token, cmap totem.token, cmap runtime.config.totem.token) where they differ.
    The running token is the configured one plus token_coefficient (650) per node count."""
    out = {}
    for n in NODES:
        want = file_token(sb, n)
        conf = sb.cluster(n).cmap_get("totem.token")
        run = sb.cluster(n).cmap_get("runtime.config.totem.token")
        if conf != want or run is None or int(run) < int(want) or (int(run) - int(want)) % 650:
            out[n] = (want, conf, run)
    return out


def verify_failures(sb: Sandbox, digest: str) -> list[dict]:
    return trail(sb, digest, ("verify", "auto-rollback"))


def marked_bad(sb: Sandbox, rev: str) -> bool:
    try:
        return read_marker(sb.cluster("kamailio01").read_cib()).corosync_bad == rev
    except HaGitopsError:
        return False


def wrote(sb: Sandbox, node: str, digest: str) -> bool:
    return attrs(sb, "kamailio01").get(node, {}).get(ATTR_FILE, "").startswith(digest + ":")


def policy(takeover: str) -> str:
    return f'[rollout]\ntakeover_timeout = "{takeover}"\nverify_timeout = "20s"\n'


# ------------------------------------------------------------------------------------------------ tests
def test_a_revert_rolls_out_like_any_change(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    base = repo.read(CONF)
    assert "token: 3000" in base
    times = []
    # The driver pauses after its write, so the others look at their runtime before the reload: the
    # check whose clock, once kept per file, was still running when the same file came back (10 s later
    # it failed that rollout at its first look).
    set_fault(sb, {"rollout-after-write": 4}, DRIVER)
    for token in ("3250", "3000", "3250"):
        text = set_key(repo.read(CONF), "totem", "token", token)
        t0 = time.monotonic()
        rev = repo.commit({CONF: text, POLICY: '[rollout]\nverify_timeout = "10s"\n'},
                          f"corosync: token {token}")
        digest = text_digest(text)
        wait_for(lambda d=digest, r=rev: applied_everywhere(sb, d) or marked_bad(sb, r),  # type: ignore[misc]
                 60, f"token {token} on every node", interval=0.3)
        times.append(round(time.monotonic() - t0, 1))
        assert not marked_bad(sb, rev), trail(sb, digest, ("verify", "auto-rollback"))
        assert not verify_failures(sb, digest)
        assert all(node_file(sb, n) == text for n in NODES)
        assert runtime_matches_file(sb) == {}
    # the second 3250 rollout is a rollout of its own: one reload each, under its own rollout id
    set_fault(sb, {}, DRIVER)
    again = steps(sb, text_digest(set_key(base, "totem", "token", "3250")), "reload")
    assert len(again) == 2 and again[0]["details"]["rollout"] != again[1]["details"]["rollout"]
    print(f"3000 -> 3250 -> 3000 -> 3250: each on every node after {times} s")


def test_driver_killed_after_writing_its_file_is_restarted_and_reloads(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = set_key(repo.read(CONF), "totem", "token", "3500")
    digest = text_digest(text)
    set_fault(sb, {"rollout-after-write": 60}, DRIVER)
    try:
        t0 = time.monotonic()
        rev = repo.commit({CONF: text}, "corosync: token 3500")
        wait_for(lambda: wrote(sb, DRIVER, digest), 30, "the driver to write its file", interval=0.1)
        killed = sb.kill(DRIVER, "agent")  # SIGKILL by PID, while it pauses after its write
        assert killed.get("killed"), killed
        set_fault(sb, {}, DRIVER)  # its supervisor restarts it 5 s later, without the pause
        wait_for(lambda: applied_everywhere(sb, digest) or marked_bad(sb, rev), 90,
                 "the rollout to finish", interval=0.5)
        elapsed = time.monotonic() - t0
    finally:
        set_fault(sb, {}, DRIVER)
    assert not marked_bad(sb, rev) and not verify_failures(sb, digest)
    assert runtime_matches_file(sb) == {} and all(node_file(sb, n) == text for n in NODES)
    reloads = steps(sb, digest, "reload")
    assert [e["node"] for e in reloads] == [DRIVER], reloads  # the restarted driver, once
    assert reloads[0]["time"] >= max(e["time"] for e in steps(sb, digest, "write-file"))
    print(f"driver killed after its write: rolled out in {elapsed:.1f}s")


def test_a_hung_driver_is_taken_over_by_the_next_node(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = set_key(repo.read(CONF), "totem", "token", "3750")
    digest = text_digest(text)
    set_fault(sb, {"rollout-after-write": 300}, DRIVER)  # hangs after its write: never reloads
    try:
        t0 = time.monotonic()
        rev = repo.commit({CONF: text, POLICY: policy("5s")}, "corosync: token 3750 (takeover 5s)")
        wait_for(lambda: wrote(sb, DRIVER, digest), 30, "the driver to write its file", interval=0.1)
        reloads = wait_for(lambda: steps(sb, digest, "reload"), 60, "a reload", interval=0.5)
        t_reload = time.monotonic() - t0
        others = [n for n in NODES if n != DRIVER]
        wait_for(lambda: {e["node"] for e in steps(sb, digest, "verified")} >= set(others), 30,
                 "the other nodes to verify", interval=0.5)
        # the driver's agent is still hung, but its corosync took the reload: its runtime is its file
        assert runtime_matches_file(sb) == {}
        assert not marked_bad(sb, rev) and not verify_failures(sb, digest)
        assert [e["node"] for e in reloads] == ["kamailio01"], reloads
        assert reloads[0]["details"]["takeover_from"] == DRIVER
        assert "taking over from kamailio03" in reloads[0]["summary"], reloads[0]
        assert "no corosync-cfgtool -R" in reloads[0]["summary"]
        # the hung agent is killed; restarted, it verifies its own runtime and the rollout completes
        set_fault(sb, {}, DRIVER)
        sb.kill(DRIVER, "agent")
        wait_for(lambda: applied_everywhere(sb, digest), 60, "every node to report it", interval=0.5)
        healthy = wait_for(lambda: steps(sb, digest, "healthy"), 60, "the health check", interval=0.5)
        elapsed = time.monotonic() - t0
    finally:
        set_fault(sb, {}, DRIVER)
    assert runtime_matches_file(sb) == {} and all(node_file(sb, n) == text for n in NODES)
    assert len(steps(sb, digest, "reload")) == 1  # the driver, back, did not reload again
    assert not verify_failures(sb, digest)
    print(f"hung driver: reload taken over after {t_reload:.1f}s (takeover 5s), healthy "
          f"({healthy[0]['node']}) after {elapsed:.1f}s")


def test_a_node_that_never_writes_its_file_abandons_the_rollout_everywhere(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = repo.read(CONF)
    text = set_key(good, "totem", "token", "4000")
    digest, prev = text_digest(text), text_digest(good)
    stuck = "kamailio01"  # second in the order: the driver writes first, then it hangs before its write
    set_fault(sb, {"rollout-before-write": 300}, stuck)
    try:
        t0 = time.monotonic()
        rev = repo.commit({CONF: text}, "corosync: token 4000")
        wait_for(lambda: wrote(sb, DRIVER, digest), 30, "the driver to write its file", interval=0.2)
        wait_for(lambda: marked_bad(sb, rev), 60, "the rollout abandoned", interval=0.5)
        t_bad = time.monotonic() - t0
        wait_for(lambda: node_file(sb, DRIVER) == good and applied_everywhere(sb, prev), 60,
                 "the driver's previous file back", interval=0.5)
        wait_for(lambda: steps(sb, digest, "rollback-reload"), 30, "the final reload")
        elapsed = time.monotonic() - t0
        assert runtime_matches_file(sb) == {}
        assert all(node_file(sb, n) == good for n in NODES)
    finally:
        set_fault(sb, {}, stuck)
    events = verify_failures(sb, digest)
    for e in events:
        print(e["node"], e["kind"], e["summary"][:200])
    verifies = [e for e in events if e["kind"] == "verify"]
    assert len(verifies) == 1 and verifies[0]["node"] == "kamailio02", events  # the next after it
    assert verifies[0]["details"]["reason"] == "RolloutAbandoned"
    error = verifies[0]["error"] or ""
    assert "rollout abandoned: kamailio01 did not write the new file" in error, error
    assert "no reload was issued" in error and "after the reload" not in error
    assert len([e for e in events if e["kind"] == "auto-rollback"]) == 1
    assert not steps(sb, digest, "reload")  # nobody reloaded the new file
    # the stuck agent, freed, finds the revision bad and writes nothing
    sb.kill(stuck, "agent")
    time.sleep(10)
    assert node_file(sb, stuck) == good and runtime_matches_file(sb) == {}
    print(f"abandoned: marked bad {t_bad:.1f}s after the commit, restored everywhere after {elapsed:.1f}s")
