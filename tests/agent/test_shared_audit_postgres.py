"""Agents sharing one PostgreSQL audit trail: every event once, whichever node recorded it."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from controller.sandbox.topology import SandboxAgents
from tests.conftest import REFERENCE, need_root, sandbox_repo_dir, sandbox_state
from tests.helpers import HA_GITOPS, GitRepo, wait_for
from tests.postgres import postgres_server

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

STATE = Path(sandbox_state("pgshared"))
REPO = sandbox_repo_dir("pgshared")
PG_BASE = Path("/var/lib/ha-gitops-test-pg")  # the nodes reach the server through its socket file here
FOLDER = "kamailio"
NODES = ["kamailio01", "kamailio02", "kamailio03"]


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    need_root()
    shutil.rmtree(REPO, ignore_errors=True)
    repo = GitRepo.create(REPO, {f"{FOLDER}/{p.name}": p.read_text() for p in REFERENCE.iterdir()},
                          "initial")
    with postgres_server(PG_BASE, socket_trust=True) as pg:
        pg.create_database("hagitops_shared")
        sb = Sandbox(STATE)
        sb.down()
        sb.up(REFERENCE, timeout=90, agents=SandboxAgents(
            repo_url=str(REPO), path=FOLDER, drift_debounce=0.2, audit_url=pg.socket_url("hagitops_shared")))
        try:
            yield sb, repo
        finally:
            sb.down(keep_logs=True)
            shutil.rmtree(REPO, ignore_errors=True)


def trail(sb: Sandbox, node: str) -> list[dict[str, Any]]:
    r = sb.exec(node, [*HA_GITOPS, "audit", "log", "--limit", "500", "--format", "json", "--db",
                       _url(sb, node)])
    assert r.returncode == 0, r.stderr
    found: list[dict[str, Any]] = json.loads(r.stdout)
    return found


def _url(sb: Sandbox, node: str) -> str:
    toml = (sb.layout.node_dir(node) / "etc-ha-gitops" / "agent.toml").read_text()
    m = re.search(r'^audit_url = "(.*)"$', toml, re.M)
    assert m
    return m.group(1)


def test_one_shared_trail_without_duplicates(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    head = repo.head()
    wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == head, 60, "initial sync")
    applies = wait_for(lambda: [e for e in trail(sb, "kamailio01") if e["kind"] == "apply"], 20, "apply")
    assert len(applies) == 1 and applies[0]["commit"]["sha"] == head
    # A hand edit: detected and corrected, each recorded once although three agents saw it.
    sb.exec("kamailio03", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "9"], check=True)
    wait_for(lambda: any(e["kind"] == "drift-corrected" for e in trail(sb, "kamailio02")), 30, "correction")
    import time

    time.sleep(2)  # the observers' passes after the correction
    events = trail(sb, "kamailio02")
    kinds = [e["kind"] for e in events]
    assert kinds.count("drift-detected") == 1 and kinds.count("drift-corrected") == 1, kinds
    # Every node reads the same trail, and the chain written by three agents is intact.
    for node in NODES:
        assert [e["id"] for e in trail(sb, node)] == [e["id"] for e in events]
    r = sb.exec("kamailio03", [*HA_GITOPS, "audit", "verify", "--db", _url(sb, "kamailio03")])
    assert r.returncode == 0, r.stdout + r.stderr
