"""A real sandbox cluster with one ha-gitops agent per node, following a real git repository, and the
small views of it the agent tests read (the CLI inside a node, its audit trail, the DC)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.agent import STATUS_KEY
from controller.audit.store import AuditStore
from controller.cib.marker import read_marker
from controller.cli.audit import log_entry
from controller.cli.operations import read_agent_status
from controller.faults import PAUSED_SUFFIX
from controller.sandbox.manager import Sandbox
from controller.sandbox.topology import SandboxAgents
from controller.settings import AgentSettings
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


def _trail(sb: Sandbox, node: str) -> AuditStore | None:
    """The node's own trail file (the agents write sqlite:////var/lib/ha-gitops/audit.db), read from here."""
    path = sb.layout.node_dir(node) / "var-lib-ha-gitops" / "audit.db"
    return AuditStore(f"sqlite:///{path}", create=False) if path.exists() else None


def audit(sb: Sandbox, node: str, limit: int = 500) -> list[dict[str, Any]]:
    """The node's audit trail, newest first, as `audit log --format json` prints it, read in this process.
    The tests poll trails: one `ha-gitops audit` per node and poll cost a CPU second each, and kept both
    cores busy."""
    store = _trail(sb, node)
    if store is None:
        return []
    with store:
        return [log_entry(e.masked()) for e in store.list(limit=limit)]


def recorded(sb: Sandbox, node: str, match: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 30) -> dict[str, Any]:
    """The newest event of the node's trail that `match`es, waited for: an agent records an event a
    moment after the CIB write it is about, so a test that saw the write must still wait for the record."""
    return wait_for(lambda: next((e for e in audit(sb, node) if match(e)), None), timeout, what)


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
    """What the node's agent published about its last pass, as `status --format json` shows it ("agent"):
    its status file, in the node's private /run (reached through the root of the node's init), else the
    trail's copy. Read in this process, as `audit` is: the tests poll it."""
    status_file = AgentSettings.model_fields["status_file"].default  # the sandbox agents keep the default
    found = read_agent_status(Path(f"/proc/{sb.init_pid(node)}/root") / status_file.relative_to("/"))
    if found is None and (store := _trail(sb, node)) is not None:
        with store:
            found = store.get_state(STATUS_KEY, scope=node)
    return found or {}
