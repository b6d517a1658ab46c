"""`systemctl` for a sandbox node: the agent's service_command inside the sandbox.

Usage: python -m controller.sandbox.service_ctl NODE_DIR start|stop|restart corosync|pacemaker
As with the Debian units (pacemaker.service Requires corosync.service): stopping corosync stops pacemaker
first, starting pacemaker starts corosync first; stopping pacemaker or (re)starting corosync touches that
unit alone. Talks to the node's init (its PID 1) over the node's control socket.
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
    node_dir, action, unit = Path(argv[0]), argv[1], argv[2]
    if action in ("stop", "restart"):
        # pacemaker.service Requires corosync: stopping corosync stops pacemaker, not the other way round
        stop = ["pacemaker"] if unit == "pacemaker" else ["pacemaker", "corosync"]
        resp = ask(node_dir, {"op": "stop", "timeout": 120, "services": stop})
        if not resp.get("ok"):
            sys.stderr.write(f"stop failed: {resp.get('error')}\n")
            return 1
    if action in ("start", "restart"):
        # starting pacemaker starts corosync first; (re)starting corosync starts corosync alone
        resp = ask(node_dir, {"op": "start", "services": ["corosync"] if unit == "corosync"
                              else ["corosync", "pacemaker"]})
        if not resp.get("ok"):
            sys.stderr.write(f"start failed: {resp.get('error')}\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
