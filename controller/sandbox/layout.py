"""Where a sandbox keeps its state on the host. Paths under it are the same inside every node."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from controller.sandbox.node_init import BIND_DIRS

DEFAULT_STATE_DIR = "/var/lib/ha-gitops-sandbox"


def default_state_dir() -> Path:
    return Path(os.environ.get("HA_GITOPS_SANDBOX_DIR", DEFAULT_STATE_DIR))


class Layout:
    def __init__(self, state_dir: str | Path | None = None) -> None:
        # Not under /run or /tmp: those are private per node, and the nodes must see these files.
        self.root = Path(state_dir) if state_dir else default_state_dir()
        self.root = self.root.resolve()

    @property
    def tag(self) -> str:
        return hashlib.sha1(str(self.root).encode()).hexdigest()[:6]

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def control_socket(self) -> Path:
        return self.root / "control.sock"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def fence_plugin(self) -> Path:
        return self.root / "fence-agent"

    @property
    def hosts(self) -> Path:
        """/etc/hosts inside every node: the nodes resolve each other's names (crm node standby NAME)."""
        return self.root / "hosts"

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    def node_dir(self, name: str) -> Path:
        return self.nodes_dir / name

    def node_logs(self, name: str) -> list[Path]:
        d = self.node_dir(name)
        return [d / "var-log-pacemaker" / "pacemaker.log", d / "logs" / "corosync.out",
                d / "logs" / "pacemaker.out"]

    def bind_dirs(self, name: str) -> dict[str, Path]:
        return {host: self.node_dir(name) / sub for host, sub in BIND_DIRS.items()}
