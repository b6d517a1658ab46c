"""A real sandbox cluster with one ha-gitops agent per node, following a real git repository, and the
small views of it the agent tests read (the CLI inside a node, its audit trail, the DC)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from controller.cib.marker import read_marker
from controller.faults import PAUSED_SUFFIX
from controller.sandbox.manager import Sandbox
from controller.sandbox.topology import SandboxAgents
from tests.conftest import REFERENCE, need_root, sandbox_repo_dir, sandbox_state
from tests.helpers import HA_GITOPS, GitRepo, wait_for

# cluster.toml: the PROXY01 group may not be disrupted outside a maintenance window, which is closed
# (it opens for a minute on New Year's Day).
PROTECTED_OUTSIDE_WINDOW = '''
[[maintenance_window]]
name = "new-year"
cron = "0 3 1 1 *"
duration = "1m"

[disruption]
protect = ["PROXY01"]
'''


def reference_files(folder: str) -> dict[str, str]:
    """The reference cluster's desired files, under `folder` of a repository."""
    return {f"{folder}/{p.name}": p.read_text() for p in REFERENCE.iterdir() if p.is_file()}


@contextmanager
def agents_sandbox(name: str, folder: str, *, extra: dict[str, str] | None = None,
                   message: str = "kamailio: initial desired state", synced: bool = True,
                   ready: Callable[[Sandbox, GitRepo], None] | None = None,
                   **agents: Any) -> Iterator[tuple[Sandbox, GitRepo]]:
    """The reference cluster in its own sandbox (state `sandbox_state(name)`), its agents following a
    repository seeded with the reference files (+ `extra`). With `synced`, returns once the initial sync
    is applied; `ready(sb, repo)` waits for more. Torn down afterwards, logs kept. `forge=True` (and
    `remote="https"`): the repository seeds the sandbox's forge and the agents follow the forge instead
    (push in the forge's work clone then, see tests/sandbox/test_forge_on_sandbox.py)."""
    need_root()
    repo_dir = sandbox_repo_dir(name)
    shutil.rmtree(repo_dir, ignore_errors=True)
    repo = GitRepo.create(repo_dir, {**reference_files(folder), **(extra or {})}, message)
    sb = Sandbox(sandbox_state(name))
    sb.down()
    settings: dict[str, Any] = {"poll_interval": 5.0, "drift_debounce": 0.2, **agents}
    sb.up(REFERENCE, timeout=90, agents=SandboxAgents(repo_url=str(repo_dir), path=folder, **settings))
    try:
        if synced:
            wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == repo.head(), 60,
                     "the initial sync")
        if ready is not None:
            ready(sb, repo)
        yield sb, repo
    finally:
        sb.down(keep_logs=True)
        shutil.rmtree(repo_dir, ignore_errors=True)


def cli(sb: Sandbox, node: str, *args: str, timeout: float = 180) -> tuple[int, str, str]:
    """`ha-gitops ARGS` inside a node: (exit code, stdout, stderr)."""
    r = sb.exec(node, [*HA_GITOPS, *args], timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def audit(sb: Sandbox, node: str) -> list[dict[str, Any]]:
    """The node's audit trail, newest first."""
    code, out, err = cli(sb, node, "audit", "log", "--limit", "500", "--format", "json")
    assert code == 0, err
    found: list[dict[str, Any]] = json.loads(out)
    return found


def dc(sb: Sandbox, via: str = "kamailio01") -> str:
    d = sb.cluster(via).status().dc
    assert d
    return d


AGENT_TOML = "/etc/ha-gitops/agent.toml"  # where `sandbox up --agents` writes each node's settings
SANDBOX_NODES = ("kamailio01", "kamailio02", "kamailio03")


def set_fault(sb: Sandbox, faults: dict[str, Any], *nodes: str) -> None:
    """The fault file (controller/faults.py) of `nodes` (default: every node): read at each point."""
    for node in nodes or SANDBOX_NODES:
        (sb.layout.node_dir(node) / "etc-ha-gitops" / "faults.json").write_text(json.dumps(faults))


def wait_paused(sb: Sandbox, node: str, point: str, timeout: float = 60) -> None:
    """Until `node`'s agent is held at the fault point `point` (controller/faults.py announces it)."""
    paused = sb.layout.node_dir(node) / "etc-ha-gitops" / ("faults.json" + PAUSED_SUFFIX)

    def held() -> bool:
        try:
            return bool(json.loads(paused.read_text()).get("point") == point)
        except (OSError, ValueError):
            return False

    wait_for(held, timeout, f"{node}'s agent held at {point}")


def agent_status(sb: Sandbox, node: str) -> dict[str, Any]:
    """What the node's agent published about its last pass (`status --format json`)."""
    code, out, err = cli(sb, node, "status", "--config", AGENT_TOML, "--format", "json")
    assert code == 0, err
    found: dict[str, Any] = json.loads(out)["agent"] or {}
    return found

