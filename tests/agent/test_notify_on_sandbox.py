"""Notifications on a real cluster: three agents, configured through an `--agent-config` fragment with one
`[[notify]]` target, Apprise's generic JSON webhook (json://) to a real HTTP receiver in the sandbox's
bridge namespace. A drift and its correction each arrive once (one message per event cluster-wide,
although every node's trail records them); one made while the receiver is down does not delay the pass
and arrives once the receiver is back."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.manager import Sandbox
from controller.sandbox.network import NETNS_DIR, SandboxNetwork
from controller.sandbox.topology import build_spec
from tests.agentslib import AGENT_TOML, SANDBOX_NODES, agents_sandbox, audit, cli, dc
from tests.conftest import REFERENCE, sandbox_state
from tests.helpers import GitRepo, wait_for
from tests.notify_receiver import Receiver

pytestmark = pytest.mark.sandbox

NAME = "notify"
FOLDER = "clusters/kamailio"
PORT = 8787
# The receiver listens on the sandbox bridge's own address (the power switch's): every node reaches it.
ADDRESS = build_spec(REFERENCE).power_switch
FRAGMENT = f'''
[[notify]]
name = "hook"
url = "json://{ADDRESS}:{PORT}/ha-gitops"
events = ["drift-detected", "drift-corrected", "refused"]
timeout = 3
retry_initial = 1
retry_max = 2
'''


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo, Receiver]]:
    with agents_sandbox(NAME, FOLDER, agent_config=FRAGMENT, agent_config_source="notify.toml") as (sb, repo):
        receiver = Receiver(ADDRESS, PORT, Path(sandbox_state(NAME)) / "received.jsonl",
                            netns=Path(NETNS_DIR) / SandboxNetwork(sb.layout.tag).bridge_ns)
        receiver.out.unlink(missing_ok=True)
        receiver.start()
        try:
            yield sb, repo, receiver
        finally:
            receiver.stop()


def stickiness(sb: Sandbox) -> str:
    r = sb.exec("kamailio01", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                               "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


def hand_edit(sb: Sandbox, value: str) -> None:
    sb.exec("kamailio03", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", value], check=True)


def drift_events(sb: Sandbox, node: str, after: int = 0) -> list[dict[str, Any]]:
    return [e for e in audit(sb, node)
            if e["kind"] in ("drift-detected", "drift-corrected") and e["id"] > after]


def both_kinds(sb: Sandbox, node: str, after: int = 0) -> list[dict[str, Any]] | None:
    """The node's drift-detected and drift-corrected events after `after`, once it holds both."""
    found = drift_events(sb, node, after)
    return found if {e["kind"] for e in found} == {"drift-detected", "drift-corrected"} else None


def outbox(sb: Sandbox, node: str) -> dict[str, Any]:
    code, out, err = cli(sb, node, "status", "--config", AGENT_TOML, "--format", "json")
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)["notifications"]
    return found


def test_a_drift_and_its_correction_arrive_once_each(env: tuple[Sandbox, GitRepo, Receiver]) -> None:
    sb, _, receiver = env
    wanted = stickiness(sb)
    writer = dc(sb)
    hand_edit(sb, "7")
    wait_for(lambda: stickiness(sb) == wanted, 20, "drift corrected")
    events = wait_for(lambda: both_kinds(sb, writer), 20, "the writer's drift events")
    ids = {e["event_id"] for e in events}
    # Every node's trail holds the correction (the observers' copies queue nothing).
    for node in SANDBOX_NODES:
        def corrected(n: str = node) -> bool:
            return any(e["kind"] == "drift-corrected" for e in drift_events(sb, n))

        wait_for(corrected, 20, f"{node} records the correction")
    wait_for(lambda: ids <= set(receiver.event_ids()), 20, "both notifications")
    time.sleep(4)  # a second copy, were one queued, would arrive by now (retries every 2 s at most)
    got = receiver.event_ids()
    assert sorted(i for i in got if i in ids) == sorted(ids), got
    assert len(got) == len(set(got)), f"a notification arrived twice: {got}"
    first = next(m for m in receiver.messages() if "drift-corrected" in m["title"])
    assert first["title"] == "ha-gitops kamailio: drift-corrected" and first["_path"] == "/ha-gitops"
    assert f"node: {writer}" in first["message"]
    for node in SANDBOX_NODES:
        box = outbox(sb, node)
        assert (box["pending"], box["failing"]) == (0, 0), (node, box)
        assert box["sent"] == (len(ids) if node == writer else 0), (node, box)


def test_one_made_while_the_receiver_is_down_arrives_when_it_is_back(
        env: tuple[Sandbox, GitRepo, Receiver]) -> None:
    sb, _, receiver = env
    wanted = stickiness(sb)
    writer = dc(sb)
    last = max((e["id"] for e in drift_events(sb, writer)), default=0)
    receiver.stop()
    try:
        hand_edit(sb, "9")
        # The pass is not held up by the receiver: the hand edit is undone as promptly as ever.
        wait_for(lambda: stickiness(sb) == wanted, 20, "drift corrected while the receiver is down")
        events = wait_for(lambda: both_kinds(sb, writer, last), 20, "the writer's drift events")
        ids = {e["event_id"] for e in events}
        def failed() -> dict[str, Any] | None:
            b = outbox(sb, writer)
            return b if b["oldest_failure"] else None

        box = wait_for(failed, 20, "a failed delivery in status")
        assert box["pending"] + box["failing"] >= 1 and box["oldest_failure"]["event_id"] in ids
        assert not ids & set(receiver.event_ids())
    finally:
        receiver.start()
    wait_for(lambda: ids <= set(receiver.event_ids()), 30, "the queued ones, the receiver back")
    time.sleep(3)
    got = receiver.event_ids()
    assert len(got) == len(set(got)), f"a notification arrived twice: {got}"
    box = outbox(sb, writer)
    assert (box["pending"], box["failing"], box["oldest_failure"]) == (0, 0, None), box


def test_an_invalid_commit_every_node_refuses_is_one_message(env: tuple[Sandbox, GitRepo, Receiver]) -> None:
    """Every node judges an invalid commit itself and records the refusal under one event id: only the
    writer's record is queued."""
    sb, repo, receiver = env
    writer = dc(sb)
    crm = repo.read(f"{FOLDER}/cib.crm")
    sha = repo.commit({f"{FOLDER}/cib.crm": crm + "primitve broken-typo Dummy\n"}, "typo: not valid crm")

    def refusal(node: str) -> dict[str, Any] | None:
        return next((e for e in audit(sb, node) if e["kind"] == "refused" and e["commit"]
                     and e["commit"]["sha"] == sha), None)

    refused = {node: wait_for(functools.partial(refusal, node), 60, f"{node} refuses {sha[:8]}")
               for node in SANDBOX_NODES}
    ids = {e["event_id"] for e in refused.values()}
    assert len(ids) == 1, refused
    (event_id,) = ids
    wait_for(lambda: event_id in receiver.event_ids(), 20, "the refusal's notification")
    time.sleep(4)
    got = receiver.event_ids()
    assert got.count(event_id) == 1, got
    msg = next(m for m in receiver.messages() if event_id in m["message"])
    assert msg["title"] == "ha-gitops kamailio: refused (refused)" and msg["type"] == "warning"
    assert f"commit: {sha[:10]} typo: not valid crm" in msg["message"] and f"node: {writer}" in msg["message"]
