"""One cluster-wide history, on the real sandbox cluster (issue 11, item 6).

Three agents follow a repository whose cluster.toml protects PROXY01 outside a (closed) maintenance
window. Every event reaches every node's trail under one `event_id`: a push, a rollback made from a node
that did not write the push (by that id), a refusal (an invalid commit, which every node judges, and a
policy refusal, which only the DC can judge: its event reaches the others through the CIB marker
history), suspend and resume, and a failed verify with the auto-rollback after it. `blame IP-HA-01`
names the commit of a pushed change to it, on the writer and on an observer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from tests.agentslib import PROTECTED_OUTSIDE_WINDOW, agents_sandbox, audit, cli, dc
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

NODES = ["kamailio01", "kamailio02", "kamailio03"]
FOLDER = "kamailio"
CRM = f"{FOLDER}/cib.crm"
POLICY = PROTECTED_OUTSIDE_WINDOW + '''
[settle]
timeout = "40s"
'''


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("history", FOLDER, extra={f"{FOLDER}/cluster.toml": POLICY},
                        message="kamailio, PROXY01 protected") as e:
        yield e


def everywhere(sb: Sandbox, match: Any, what: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The newest event `match` accepts, in each node's trail once all three hold one."""
    def found() -> dict[str, dict[str, Any]] | None:
        out = {}
        for node in NODES:
            e = next((e for e in audit(sb, node) if match(e)), None)
            if e is None:
                return None
            out[node] = e
        return out

    return wait_for(found, timeout, f"{what} in every node's trail", interval=1.0)


def one_event_id(held: dict[str, dict[str, Any]]) -> str:
    ids = {e["event_id"] for e in held.values()}
    assert len(ids) == 1 and None not in ids, held
    return str(ids.pop())


def newest(sb: Sandbox, node: str, match: Any, what: str) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in audit(sb, node) if match(e)), None), 30, what, interval=1.0)


def by_id(event_id: str) -> Any:
    return lambda e: e["event_id"] == event_id


def of_commit(kind: str, sha: str, outcome: str = "success") -> Any:
    return lambda e: e["kind"] == kind and e["outcome"] == outcome and (e["commit"] or {}).get("sha") == sha


def threshold(sb: Sandbox) -> str | None:
    nv = sb.cluster("kamailio01").read_cib().find(
        ".//primitive[@id='IP-HA-01']/meta_attributes/nvpair[@name='migration-threshold']")
    return None if nv is None else nv.get("value")


def push_threshold(sb: Sandbox, repo: GitRepo, value: int) -> str:
    crm = repo.read(CRM)
    assert crm.index("migration-threshold=") > crm.index("primitive IP-HA-01")  # the first is IP-HA-01's
    sha = repo.commit({CRM: re.sub(r"migration-threshold=\d+", f"migration-threshold={value}", crm, count=1)},
                      f"IP-HA-01: migration-threshold {value}")
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == sha
             and threshold(sb) == str(value), 60, f"migration-threshold {value} applied")
    return sha


def observer_of(sb: Sandbox, writer: str) -> str:
    return next(n for n in NODES if n != writer)


def test_a_push_has_one_event_id_on_every_node_and_blame_names_its_commit(
        env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    assert threshold(sb) == "2"
    started = time.monotonic()
    sha = push_threshold(sb, repo, 3)
    held = everywhere(sb, of_commit("apply", sha), "the apply")
    took = time.monotonic() - started
    event_id = one_event_id(held)
    writer = next(n for n, e in held.items() if "observed_by" not in e["details"])
    assert {e["node"] for e in held.values()} == {writer}  # every trail names the writer
    for node, e in held.items():
        if node != writer:
            assert e["details"]["observed_by"] == node and not e["details"].get("backfilled"), e
    # `audit log` shows it (8 characters), `audit show` takes it, on any node, text and json.
    watcher = observer_of(sb, writer)
    _, text, _ = cli(sb, watcher, "audit", "log", "--limit", "50")
    assert event_id[:8] in text
    code, shown, err = cli(sb, watcher, "audit", "show", event_id[:8], "--format", "json")
    assert code == 0 and json.loads(shown)["event_id"] == event_id, err
    # blame: the commit, its author and the event, on the writer (its diff) and an observer (the
    # configurations it saw).
    for node in (writer, watcher):
        code, out, err = cli(sb, node, "blame", "IP-HA-01", "--format", "json")
        assert code == 0, err
        [ip] = json.loads(out)["objects"]
        assert (ip["kind"], ip["id"], ip["commit"], ip["event_id"]) == ("resource", "IP-HA-01", sha, event_id)
        assert "Ops" in (ip["author"] or "") and ip["unsure_after"] == [], ip
        assert {f["field"] for f in ip["fields"]} == {"meta.migration-threshold"}, ip
        code, out, err = cli(sb, node, "blame", "IP-HA-01")
        assert code == 0 and "resource IP-HA-01" in out and sha[:10] in out and event_id[:8] in out, out + err
        assert "meta.migration-threshold: 2 -> 3" in out, out
    code, out, _ = cli(sb, watcher, "blame", "--format", "json")
    objects = {(o["kind"], o["id"]): o for o in json.loads(out)["objects"]}
    assert objects[("resource", "IP-HA-01")]["commit"] == sha
    # (An observer's diff can also hold what the cluster itself changed in <nodes> since its last look.)
    blamed = {k: o for k, o in objects.items() if o["commit"] == sha and k[0] != "node"}
    assert list(blamed) == [("resource", "IP-HA-01")], blamed
    print(f"\npush -> the same event id in all three trails: {took:.1f}s")


def test_rollback_by_event_id_from_a_node_that_did_not_write_it(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    sha = push_threshold(sb, repo, 4)
    held = everywhere(sb, of_commit("apply", sha), "the apply")
    event_id = one_event_id(held)
    writer = held[NODES[0]]["node"]
    other = observer_of(sb, writer)
    assert held[other]["details"]["observed_by"] == other
    code, out, err = cli(sb, other, "rollback", event_id[:8])
    assert code == 0, out + err
    assert threshold(sb) == "3"  # the configuration from before the push
    assert read_marker(sb.cluster(writer).read_cib()).pinned == sha
    mine = newest(sb, other, lambda e: e["kind"] == "rollback" and e["node"] == other
                  and e["details"].get("target_event_id") == event_id, "the rollback in its node's trail")
    rolled = everywhere(sb, by_id(mine["event_id"]), "the rollback")
    assert {e["node"] for e in rolled.values()} == {other} and all(
        e["kind"] == "rollback" and e["outcome"] == "success" for e in rolled.values()), rolled
    # resume clears the pin: the agents apply the head again; the resume is in every trail too.
    code, out, err = cli(sb, other, "resume")
    assert code == 0, out + err
    resumed = newest(sb, other, lambda e: e["kind"] == "resume", "the resume")
    everywhere(sb, by_id(resumed["event_id"]), "the resume")
    wait_for(lambda: threshold(sb) == "4", 60, "the head applied again after resume")


def test_refusals_and_suspend_reach_every_trail(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    good = repo.read(CRM)
    # Invalid: every node judges it, and records it under the same id.
    bad = repo.commit({CRM: good + "primitve broken-typo Dummy\n"}, "a typo")
    refused = everywhere(sb, of_commit("refused", bad, "refused"), "the invalid commit's refusal")
    one_event_id(refused)
    assert "primitve" in refused[dc(sb)]["error"], refused
    # Policy: only the DC predicts the impact; the others learn of the refusal from the marker history.
    writer = dc(sb)
    moved = repo.commit({CRM: good.replace("ip=10.220.1.25", "ip=10.220.1.26")}, "move the VIP")
    refused = everywhere(sb, of_commit("refused", moved, "refused"), "the policy refusal")
    one_event_id(refused)
    assert "protect" in refused[writer]["error"] and refused[writer]["details"]["announced"] is True
    for node in NODES:
        assert refused[node]["node"] == writer, refused
        if node != writer:
            assert refused[node]["details"]["codes"] == ["policy"], refused[node]
            assert refused[node]["details"].get("source") == "cib-marker-history" or \
                "observed on" in refused[node]["summary"], refused[node]
    # suspend on one node: every trail holds it.
    typed = observer_of(sb, writer)
    code, out, err = cli(sb, typed, "suspend")
    assert code == 0, out + err
    suspended = newest(sb, typed, lambda e: e["kind"] == "suspend", "the suspend")
    assert everywhere(sb, by_id(suspended["event_id"]), "the suspend")[writer]["node"] == typed
    code, out, err = cli(sb, writer, "resume")
    assert code == 0, out + err
    fixed = repo.commit({CRM: good}, "back to the valid configuration")
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == fixed, 60,
             "the fix applied")
    for node in NODES:
        code, out, err = cli(sb, node, "audit", "verify")
        assert code == 0 and out.startswith("ok:"), out + err


def test_a_failed_verify_and_its_auto_rollback_reach_every_trail(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    base = repo.read(CRM)
    broken = ("primitive broken-dummy ocf:pacemaker:Dummy \\\n\tparams state=/nonexistent/dir/state \\\n"
              "\tmeta migration-threshold=1\n")
    sha = repo.commit({CRM: base + broken}, "add a resource that cannot start")
    rolled = everywhere(sb, of_commit("auto-rollback", sha), "the auto-rollback", timeout=150)
    one_event_id(rolled)
    writer = rolled[NODES[0]]["node"]
    failed = everywhere(sb, lambda e: e["kind"] == "verify" and e["outcome"] == "failure"
                        and (e["commit"] or {}).get("sha") == sha, "the failed verify")
    one_event_id(failed)
    assert "broken-dummy" in failed[writer]["summary"]
    assert all(e["node"] == writer for e in failed.values())
    for node in NODES:
        if node != writer:
            assert failed[node]["details"]["codes"] == ["HealthCheckFailed"], failed[node]
    # blame: the auto-rollback removed what the unhealthy apply added.
    code, out, err = cli(sb, observer_of(sb, writer), "blame", "broken-dummy", "--format", "json")
    assert code == 0, err
    [obj] = json.loads(out)["objects"]
    assert (obj["action"], obj["event_kind"]) == ("removed", "auto-rollback"), obj
    repo.commit({CRM: base.replace("resource-stickiness=100", "resource-stickiness=120")},
                "drop the broken resource, stickiness 120")
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).bad is None, 60,
             "a newer commit applied")
