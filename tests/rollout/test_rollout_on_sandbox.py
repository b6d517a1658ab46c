"""The corosync.conf rollout on the real 3-node sandbox, driven by the agents from a git repository."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from controller.cib.marker import read_marker
from controller.errors import HaGitopsError
from controller.rollout import ATTR_APPLIED, ATTR_FILE, text_digest
from controller.sandbox.manager import Sandbox
from tests.agentslib import agents_sandbox, audit
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

NODES = ["kamailio01", "kamailio02", "kamailio03"]
FOLDER = "clusters/kamailio"
CONF = f"{FOLDER}/corosync.conf"
VIP = "10.220.1.25"


def initial_corosync_reported(sb: Sandbox, repo: GitRepo) -> None:
    """The order needs the CIB's standby flags (the initial sync), and every node's report of the
    initial corosync.conf."""
    digest = text_digest(repo.read(CONF))
    wait_for(lambda: applied_everywhere(sb, digest), 60, "every node to report the initial corosync.conf")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("rollout", FOLDER, ready=initial_corosync_reported) as e:
        yield e


def attrs(sb: Sandbox, via: str = "kamailio01") -> dict[str, dict[str, str]]:
    """Node name -> its permanent node attributes, from the CIB."""
    try:
        cib = sb.cluster(via).read_cib()
    except HaGitopsError:
        return {}
    return {n.get("uname", ""): {nv.get("name", ""): nv.get("value", "")
                                 for nv in n.iterfind("instance_attributes/nvpair")}
            for n in cib.iterfind("configuration/nodes/node")}


def applied_everywhere(sb: Sandbox, digest: str, via: str = "kamailio01") -> bool:
    a = attrs(sb, via)
    return len(a) == 3 and all(v.get(ATTR_APPLIED) == digest for v in a.values())


def node_file(sb: Sandbox, node: str) -> str:
    return (sb.layout.node_dir(node) / "etc-corosync" / "corosync.conf").read_text()


def steps(sb: Sandbox, digest: str, step: str | None = None) -> list[dict]:
    """Every node's rollout events for `digest`, oldest first (one host clock: times compare)."""
    out = [e for n in NODES for e in audit(sb, n)
           if e["kind"] in ("rollout-step", "refused", "error")
           and (e.get("details") or {}).get("digest") == digest
           and (step is None or e["details"].get("step") == step)]
    return sorted(out, key=lambda e: e["time"])


def commit_conf(repo: GitRepo, text: str, message: str) -> str:
    repo.commit({CONF: text}, message)
    return text_digest(text)


class Sampler:
    """Runs `probe` every `interval` seconds in a thread; keeps (monotonic time, result)."""

    def __init__(self, probe: Callable[[], object], interval: float = 0.2) -> None:
        self.probe, self.interval = probe, interval
        self.samples: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = self.probe()
            except HaGitopsError as exc:
                value = f"error: {exc}"
            self.samples.append((time.monotonic(), value))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._t.join(10)


class VipPinger:
    """`ping` of the VIP from a node that never holds it; the longest gap between answers."""

    def __init__(self, sb: Sandbox, node: str, interval: float = 0.05) -> None:
        argv = [*sb.prefix(node), "ping", "-n", "-D", "-i", str(interval), "-W", "1", VIP]
        # Own process group: nsenter forks ping as its child, both must go at the end.
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self.times: list[float] = []

    def stop(self) -> float:
        os.killpg(self.proc.pid, signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        self.times = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
        assert len(self.times) > 10, out[-500:]
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


def set_key(text: str, section: str, key: str, value: str) -> str:
    """corosync.conf text with `key: value` set in the first `section {` (added at its top if absent)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\s*{section}\s*\{{", line))
    for i in range(start + 1, len(lines)):
        if re.match(r"^\s*\}", lines[i]) or re.match(r"^\s*\w+\s*\{", lines[i]):
            break
        if re.match(rf"^\s*{key}\s*:", lines[i]):
            lines[i] = f"{key}: {value}\n"
            return "".join(lines)
    lines.insert(start + 1, f"{key}: {value}\n")
    return "".join(lines)


# ------------------------------------------------------------------------------------------------ tests
def test_token_reload_reaches_every_node_standby_first_while_quorate(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = set_key(repo.read(CONF), "totem", "token", "1000")
    with Sampler(lambda: sb.cluster("kamailio02").quorum().quorate) as quorate:
        t0 = time.monotonic()
        digest = commit_conf(repo, text, "corosync: token 1000")
        wait_for(lambda: applied_everywhere(sb, digest), 60, "the token change on every node")
        elapsed = time.monotonic() - t0
    assert quorate.samples and all(v is True for _, v in quorate.samples), quorate.samples
    for node in NODES:
        assert node_file(sb, node) == text
        assert sb.cluster(node).cmap_get("totem.token") == "1000"
        runtime = int(sb.cluster(node).cmap_get("runtime.config.totem.token") or 0)
        assert runtime >= 1000 and (runtime - 1000) % 650 == 0  # + token_coefficient per node (3600 seen)
        assert sb.cluster(node).cmap_get("config.totemconfig_reload_in_progress") in (None, "0")
    writes = steps(sb, digest, "write-file")
    assert [e["node"] for e in writes] == ["kamailio03", "kamailio01", "kamailio02"]  # standby first
    assert [e["details"]["position"] for e in writes] == [1, 2, 3]
    reloads = steps(sb, digest, "reload")
    assert [e["node"] for e in reloads] == ["kamailio03"]  # one -R, after every node had its file
    assert reloads[0]["time"] >= writes[-1]["time"]
    assert {e["node"] for e in steps(sb, digest, "verified")} == set(NODES)
    print(f"reload across 3 nodes: {elapsed:.2f}s, {len(quorate.samples)} quorum samples, all quorate")


def test_config_failing_corosync_t_is_refused_and_no_file_changes(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = repo.read(CONF)
    before = {n: node_file(sb, n) for n in NODES}
    bad = set_key(good, "totem", "version", "3")  # parses, but corosync accepts only version 2
    digest = commit_conf(repo, bad, "corosync: version 3 (invalid)")
    # Every node validates the revision with `corosync -t` before anything is written: refused as invalid.
    refused = wait_for(lambda: [e for e in steps(sb, digest) if e["kind"] == "refused"], 30, "the refusal")
    assert "corosync -t" in (refused[0]["error"] or ""), refused[0]
    assert "version 2" in (refused[0]["error"] or ""), refused[0]
    time.sleep(2)
    assert {n: node_file(sb, n) for n in NODES} == before
    assert not any(a.get(ATTR_FILE, "").startswith(digest) for a in attrs(sb).values())
    # back to the good file: the nodes already run it, nothing to do
    commit_conf(repo, good, "corosync: back to version 2")
    wait_for(lambda: applied_everywhere(sb, text_digest(good)), 20, "the good file reported again")
    assert {n: node_file(sb, n) for n in NODES} == before


def test_rolling_restart_node_by_node_with_the_vip_answering(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = repo.read(CONF) + "system {\nmove_to_root_cgroup: no\n}\n"  # a rolling-restart key
    ping = VipPinger(sb, "kamailio03")  # the standby node never holds the VIP
    try:
        time.sleep(1)
        t0 = time.monotonic()
        digest = commit_conf(repo, text, "corosync: system.move_to_root_cgroup (rolling restart)")
        wait_for(lambda: applied_everywhere(sb, digest), 150, "the rolling restart on every node", interval=1)
        elapsed = time.monotonic() - t0
        time.sleep(1)
    finally:
        gap = ping.stop()
    restarted = steps(sb, digest, "restarted")
    assert [e["node"] for e in restarted] == ["kamailio03", "kamailio01", "kamailio02"]
    assert all(e["details"]["class"] == "rolling-restart" for e in restarted)
    for node in NODES:
        assert node_file(sb, node) == text
        assert sb.cluster(node).cmap_get("system.move_to_root_cgroup") == "no"
    st = sb.cluster("kamailio01").status()
    assert all(n.online for n in st.nodes) and st.quorate
    assert [n.name for n in st.nodes if n.standby] == ["kamailio03"]  # nobody left in standby
    per_node = [e["details"]["seconds"] for e in restarted]
    print(f"rolling restart: {elapsed:.1f}s total, per node {per_node}, longest VIP gap {gap:.3f}s")
    assert gap < 5.0


def test_rollout_interrupted_by_a_poweroff_stops_and_finishes_when_the_node_is_back(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    text = set_key(repo.read(CONF), "totem", "token", "1500")
    digest = commit_conf(repo, text, "corosync: token 1500")
    wait_for(lambda: attrs(sb, "kamailio03").get("kamailio03", {}).get(ATTR_FILE, "").startswith(digest), 30,
             "the first node to write", interval=0.05)
    sb.poweroff("kamailio02")
    paused = wait_for(lambda: steps(sb, digest, "paused"), 30, "the rollout to pause")
    assert "kamailio02" in paused[0]["details"]["reason"] or "quorate" in paused[0]["details"]["reason"]
    assert not applied_everywhere(sb, digest, via="kamailio03")
    with contextlib.suppress(HaGitopsError):  # fencing may have rebooted it already
        sb.start("kamailio02")
    wait_for(lambda: applied_everywhere(sb, digest, via="kamailio03"), 90, "the rollout to finish",
             interval=1)
    for node in NODES:
        assert node_file(sb, node) == text
        assert sb.cluster(node).cmap_get("totem.token") == "1500"
    assert steps(sb, digest, "resumed")


def trail(sb: Sandbox, digest: str, kinds: tuple[str, ...]) -> list[dict]:
    return sorted((e for n in NODES for e in audit(sb, n) if e["kind"] in kinds
                   and (e.get("details") or {}).get("digest") == digest), key=lambda e: e["time"])


def policy(cron: str) -> dict[str, str]:
    return {f"{FOLDER}/cluster.toml": f'[[maintenance_window]]\nname = "test"\ncron = "{cron}"\n'
            'duration = "1h"\n\n[disruption]\nallow_cluster_restart = true\n\n[settle]\ntimeout = "20s"\n'}


def test_cluster_restart_refused_without_a_window_then_driven_by_the_standby_node_in_one(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    before = {n: node_file(sb, n) for n in NODES}
    text = set_key(repo.read(CONF), "totem", "netmtu", "1400")  # cluster-restart class
    closed = f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"  # a window 12 hours away
    repo.commit({**policy(closed), CONF: text}, "corosync: netmtu 1400, no window open")
    digest = text_digest(text)
    refused = wait_for(lambda: [e for e in steps(sb, digest) if e["kind"] == "refused"], 30, "the refusal")
    assert "maintenance window" in (refused[0]["error"] or ""), refused[0]
    time.sleep(2)
    assert {n: node_file(sb, n) for n in NODES} == before
    assert not any(a.get(ATTR_FILE, "").startswith(digest) for a in attrs(sb).values())

    t0 = time.monotonic()
    repo.commit(policy("* * * * *"), "maintenance window open now")
    wait_for(lambda: applied_everywhere(sb, digest), 120, "the cluster restart on every node", interval=1)
    healthy = wait_for(lambda: steps(sb, digest, "healthy"), 60, "the driver's health check", interval=1)
    elapsed = time.monotonic() - t0
    assert healthy[0]["node"] == "kamailio03"
    requested = steps(sb, digest, "cluster-restart")
    assert [e["node"] for e in requested] == ["kamailio03"]  # the standby node drove it
    restarted = steps(sb, digest, "restarted")
    assert sorted(e["node"] for e in restarted) == NODES
    starts = [e["time"] for e in restarted]
    for node in NODES:
        assert node_file(sb, node) == text
        assert sb.cluster(node).cmap_get("totem.netmtu") == "1400"
    st = sb.cluster("kamailio01").status()
    assert st.quorate and st.dc and all(n.online for n in st.nodes), st
    print(f"cluster restart: {elapsed:.1f}s from the window opening; restarted events {starts}")


def test_reload_that_loses_quorum_is_rolled_back_on_every_node_and_marked_bad(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = repo.read(CONF)
    # A node announced before it exists, with 3 votes: consistent (expected_votes = the nodelist's
    # votes), passes `corosync -t` and the validator, reloads - and quorum is 4 of the 3 votes present.
    text = good.replace("expected_votes: 3", "expected_votes: 6").replace(
        "ring0_addr: 10.220.1.23\n}\n", "ring0_addr: 10.220.1.23\n}\nnode {\nring0_addr: 10.220.1.26\n"
        "quorum_votes: 3\n}\n")
    assert text.count("node {") == 4 and "expected_votes: 6" in text
    rev = repo.commit({CONF: text}, "corosync: a fourth node with 3 votes, not built yet (loses quorum)")
    digest, prev = text_digest(text), text_digest(good)
    t0 = time.monotonic()
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).corosync_bad == rev, 90,
             "the revision marked bad", interval=0.5)
    wait_for(lambda: all(node_file(sb, n) == good for n in NODES) and applied_everywhere(sb, prev), 60,
             "the previous corosync.conf restored on every node", interval=0.5)
    wait_for(lambda: steps(sb, digest, "rollback-reload"), 30, "the driver's final reload")
    wait_for(lambda: all(sb.cluster(n).quorum().quorate for n in NODES), 30,
             "quorum back: " + sb.exec("kamailio01", ["corosync-quorumtool", "-s"]).stdout)
    elapsed = time.monotonic() - t0
    for node in NODES:
        assert sb.cluster(node).cmap_get("quorum.expected_votes") == "3"
    events = trail(sb, digest, ("verify", "auto-rollback"))
    assert [e["kind"] for e in events][:2] == ["verify", "auto-rollback"], events
    assert events[0]["node"] == "kamailio03" and "quorum lost" in (events[0]["error"] or "")
    assert events[1]["details"]["bad_revision"] == rev
    restored = steps(sb, digest, "restored")
    assert sorted(e["node"] for e in restored) == NODES
    # not retried while git still says this revision
    time.sleep(3)
    assert all(node_file(sb, n) == good for n in NODES)
    assert len(steps(sb, digest, "write-file")) == 3
    print(f"auto-rollback of a reload: {elapsed:.1f}s until restored and quorate on every node")
