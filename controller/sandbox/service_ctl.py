"""`systemctl` for a sandbox node: the agent's service_command inside the sandbox.

Usage: python -m controller.sandbox.service_ctl NODE_DIR start|stop|restart corosync|pacemaker
As with the Debian units (pacemaker requires corosync), an action on either unit acts on both, in
dependency order. Talks to the node's init (its PID 1) over the node's control socket.
"""

from __future__ import annotations

import sys
from pathlib import Path

from controller.sandbox import jsonline


def ask(node_dir: Path, req: dict[str, object], timeout: float = 180) -> dict[str, object]:
    return jsonline.ask(node_dir / "init.sock", dict(req), timeout=timeout, who="the node's init")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop", "restart") or argv[2] not in ("corosync",
                                                                                          "pacemaker"):
        sys.stderr.write("usage: service_ctl NODE_DIR start|stop|restart corosync|pacemaker\n")
        return 2
    node_dir, action = Path(argv[0]), argv[1]
    if action in ("stop", "restart"):
        resp = ask(node_dir, {"op": "stop", "timeout": 120})
        if not resp.get("ok"):
            sys.stderr.write(f"stop failed: {resp.get('error')}\n")
            return 1
    if action in ("start", "restart"):
        resp = ask(node_dir, {"op": "start"})
        if not resp.get("ok"):
            sys.stderr.write(f"start failed: {resp.get('error')}\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
