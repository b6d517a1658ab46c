"""Polling that costs little, on a real cluster: with the push watcher off, the agents' polls ask the remote
where the branch is and fetch only when it moved; a commit is still picked up by the next poll."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from tests.agentslib import SANDBOX_NODES, agents_sandbox
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "clusters/kamailio"
POLL = 2.0
PORT = 9811
GET = ("import sys, urllib.request; "
       "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("cheap-poll", FOLDER, poll_interval=POLL, watch_source=False) as e:
        yield e


def counters(sb: Sandbox, node: str) -> tuple[float, float]:
    """(fetches, checks) the node's agent made, from its /metrics (the default listener: the node only)."""
    r = sb.exec(node, [sys.executable, "-c", GET, f"http://127.0.0.1:{PORT}/metrics"], timeout=60)
    assert r.returncode == 0, r.stderr

    def value(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", r.stdout, re.M)
        assert m, f"{name} missing from /metrics"
        return float(m.group(1))

    return value("ha_gitops_source_fetches_total"), value("ha_gitops_source_checks_total")


def test_idle_polls_only_check_and_a_commit_is_fetched_once(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    node = SANDBOX_NODES[0]
    before = counters(sb, node)
    time.sleep(6 * POLL)
    idle = counters(sb, node)
    assert idle[1] >= before[1] + 2, f"polls checked the remote: {before} -> {idle}"
    assert idle[0] == before[0], f"idle polls fetched: {before} -> {idle}"

    text = re.sub(r"resource-stickiness=\d+", "resource-stickiness=130", repo.read(f"{FOLDER}/cib.crm"))
    sha = repo.commit({f"{FOLDER}/cib.crm": text}, "stickiness 130")
    wait_for(lambda: read_marker(sb.cluster(node).read_cib()).revision == sha, 60,
             "the commit live by a poll")
    def fetched_more() -> tuple[float, float] | None:
        now = counters(sb, node)
        return now if now[0] > idle[0] else None

    fetched = wait_for(fetched_more, 30, "the fetch counted")
    time.sleep(4 * POLL)
    assert counters(sb, node)[0] == fetched[0]  # fetched once, then checks again
