"""Notifications with one shared PostgreSQL trail: three agents, three senders on one outbox. A drift and
its correction are one row each, claimed by one sender, and arrive at the real receiver once each."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cib.marker import read_marker
from controller.notify_send import IDLE_WAIT
from controller.sandbox.manager import Sandbox
from controller.sandbox.network import NETNS_DIR, SandboxNetwork
from controller.sandbox.topology import SandboxAgents, build_spec
from tests.agentslib import SANDBOX_NODES
from tests.conftest import REFERENCE, need_root, sandbox_repo_dir, sandbox_state
from tests.helpers import HA_GITOPS, GitRepo, wait_for
from tests.notify_receiver import Receiver
from tests.postgres import postgres_server

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

STATE = sandbox_state("notifypg")
REPO = sandbox_repo_dir("notifypg")
PG_BASE = Path(STATE + "-db")  # a path the nodes see: they reach the server through its socket file
FOLDER = "kamailio"
ADDRESS, PORT = build_spec(REFERENCE).power_switch, 8788
FRAGMENT = f'''
[[notify]]
name = "hook"
url = "json://{ADDRESS}:{PORT}/shared"
events = ["drift-detected", "drift-corrected"]
retry_initial = 1
retry_max = 2
'''


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, Receiver, str]]:
    need_root()
    shutil.rmtree(REPO, ignore_errors=True)
    repo = GitRepo.create(REPO, {f"{FOLDER}/{p.name}": p.read_text() for p in REFERENCE.iterdir()}, "initial")
    with postgres_server(PG_BASE, socket_trust=True) as pg:
        pg.create_database("hagitops_notify")
        url = pg.socket_url("hagitops_notify")
        sb = Sandbox(STATE)
        sb.down()
        sb.up(REFERENCE, timeout=90, agents=SandboxAgents(
            repo_url=str(REPO), path=FOLDER, drift_debounce=0.2, audit_url=url, agent_config=FRAGMENT))
        receiver = Receiver(ADDRESS, PORT, Path(STATE) / "received.jsonl",
                            netns=Path(NETNS_DIR) / SandboxNetwork(sb.layout.tag).bridge_ns)
        try:
            wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == repo.head(), 60,
                     "the initial sync")
            receiver.start()
            yield sb, receiver, url
        finally:
            receiver.stop()
            sb.down(keep_logs=True)
            shutil.rmtree(REPO, ignore_errors=True)


def trail(sb: Sandbox, url: str) -> list[dict[str, Any]]:
    r = sb.exec("kamailio02", [*HA_GITOPS, "audit", "log", "--limit", "500", "--format", "json", "--db", url])
    assert r.returncode == 0, r.stderr
    found: list[dict[str, Any]] = json.loads(r.stdout)
    return found


def test_three_senders_on_one_outbox_send_each_event_once(env: tuple[Sandbox, Receiver, str]) -> None:
    sb, receiver, url = env
    sb.exec("kamailio03", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "9"], check=True)

    def drift_ids() -> set[str] | None:
        events = [e for e in trail(sb, url) if e["kind"] in ("drift-detected", "drift-corrected")]
        return {e["event_id"] for e in events} if {e["kind"] for e in events} == {"drift-detected",
                                                                                  "drift-corrected"} else None

    ids = wait_for(drift_ids, 30, "the drift and its correction in the shared trail")
    wait_for(lambda: ids <= set(receiver.event_ids()), 30, "both notifications")
    time.sleep(IDLE_WAIT + 1)  # every agent's sender has looked at the outbox meanwhile
    got = [i for i in receiver.event_ids() if i in ids]
    assert sorted(got) == sorted(ids), receiver.event_ids()
    # Who sent it: any one of the three agents (the outbox row says which).
    for node in SANDBOX_NODES:
        r = sb.exec(node, [*HA_GITOPS, "status", "--format", "json", "--config", "/etc/ha-gitops/agent.toml"])
        assert r.returncode == 0, r.stderr
        box = json.loads(r.stdout)["notifications"]  # one outbox: every node shows the same rows
        assert (box["pending"], box["failing"], box["sent"]) == (0, 0, len(ids)), (node, box)
