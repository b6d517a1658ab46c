"""The sandbox network: one named netns per node, wired by veth pairs to a bridge in a netns of its own.

Nothing is created in the root network namespace, and no namespace has a default route, so no
packet of the sandbox can reach an address outside it.
"""

from __future__ import annotations

import time
from pathlib import Path

from controller.command import run
from controller.errors import CommandError

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"


class SandboxNetwork:
    def __init__(self, tag: str) -> None:
        # netns names are global on the host: the tag keeps two sandboxes (a user's and the tests') apart.
        self.tag = tag
        self.bridge_ns = f"hgs-{tag}-br"

    def node_ns(self, index: int) -> str:
        return f"hgs-{self.tag}-n{index}"

    @staticmethod
    def port(index: int) -> str:
        return f"port{index}"  # the bridge-side end of a node's veth, inside the bridge netns

    def exists(self, ns: str) -> bool:
        return (NETNS_DIR / ns).exists()

    def namespaces(self) -> list[str]:
        if not NETNS_DIR.is_dir():
            return []
        prefix = f"hgs-{self.tag}-"
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))

    def create_bridge(self) -> None:
        if not self.exists(self.bridge_ns):
            run(["ip", "netns", "add", self.bridge_ns])
        ns = self.bridge_ns
        r = run(["ip", "-n", ns, "link", "show", BRIDGE], check=False)
        if r.returncode != 0:
            run(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                 "forward_delay", "0"])
        run(["ip", "-n", ns, "link", "set", BRIDGE, "up"])

    def create_node(self, index: int, address: str, prefixlen: int) -> str:
        ns = self.node_ns(index)
        if self.exists(ns):
            self.delete_ns(ns)
        run(["ip", "netns", "add", ns])
        port = self.port(index)
        # A stale port from a node namespace still being torn down would make `link add` fail.
        run(["ip", "-n", self.bridge_ns, "link", "del", port], check=False)
        run(["ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
             "netns", ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", BRIDGE, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        return ns

    def cut(self, index: int) -> None:
        """Pull the node's cable at the switch: its link stays up, its packets go nowhere."""
        run(["ip", "-n", self.bridge_ns, "link", "set", self.port(index), "nomaster"])

    def heal(self, index: int) -> None:
        run(["ip", "-n", self.bridge_ns, "link", "set", self.port(index), "master", BRIDGE, "up"])

    def is_cut(self, index: int) -> bool:
        r = run(["ip", "-n", self.bridge_ns, "-o", "link", "show", self.port(index)], check=False)
        return r.returncode == 0 and f"master {BRIDGE}" not in r.stdout

    def delete_ns(self, ns: str) -> None:
        r = run(["ip", "netns", "del", ns], check=False)
        if r.returncode != 0 and self.exists(ns):
            raise CommandError(r.argv, r.returncode, r.stderr)

    def destroy(self) -> None:
        for ns in self.namespaces():
            self.delete_ns(ns)
        # Namespace teardown is asynchronous in the kernel; wait until the names are gone.
        deadline = time.monotonic() + 5
        while self.namespaces() and time.monotonic() < deadline:
            time.sleep(0.05)
