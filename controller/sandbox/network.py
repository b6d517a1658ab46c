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

    @property
    def forge_ns(self) -> str:
        return f"hgs-{self.tag}-forge"

    FORGE_PORT = "portforge"

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

    def create_node(self, index: int) -> str:
        """The node's NIC and cable: a netns with a veth whose other end is a port on the bridge. The
        NIC stays unpowered (down, no address) until `power_on`."""
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
        return ns

    def create_forge(self, address: str, prefixlen: int) -> str:
        """The forge's machine: a netns cabled to the bridge like a node, with its address on at once (it
        has no power switch: it is not part of the cluster)."""
        ns = self.forge_ns
        if self.exists(ns):
            self.delete_ns(ns)
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", self.bridge_ns, "link", "del", self.FORGE_PORT], check=False)
        run(["ip", "-n", self.bridge_ns, "link", "add", self.FORGE_PORT, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", self.FORGE_PORT, "master", BRIDGE, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        return ns

    def links(self, ns: str) -> list[str]:
        r = run(["ip", "-n", ns, "-o", "link", "show"], check=False)
        # "2: eth0@if7: <...>": the name is the second field, without the peer suffix.
        return [line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines() if ":" in line]

    def power_on(self, index: int, address: str, prefixlen: int) -> None:
        """A booting machine's NICs: only the node's own address (whatever a resource agent added before
        the power went is gone, as it would be from a real NIC)."""
        ns = self.node_ns(index)
        run(["ip", "-n", ns, "addr", "flush", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Bringing lo up restores 127.0.0.1 after a flush on current kernels; make sure of it.
        run(["ip", "-n", ns, "addr", "add", "127.0.0.1/8", "dev", "lo"], check=False)
        run(["ip", "-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def power_off(self, index: int) -> None:
        """A machine without power has no link and no address: every interface down and flushed, so a
        VIP the node held (IPaddr2) answers from nowhere. The cable (the bridge port, cut or not) stays."""
        ns = self.node_ns(index)
        if not self.exists(ns):
            return
        for dev in self.links(ns):
            run(["ip", "-n", ns, "link", "set", "dev", dev, "down"], check=False)
            run(["ip", "-n", ns, "addr", "flush", "dev", dev], check=False)

    def addresses(self, index: int) -> list[str]:
        """The IPv4 addresses the node's interfaces hold (what `ip addr` inside it would show)."""
        r = run(["ip", "-n", self.node_ns(index), "-o", "-4", "addr", "show"], check=False)
        return [f.split()[3].split("/")[0] for f in r.stdout.splitlines() if len(f.split()) > 3]

    def add_switch_address(self, address: str, prefixlen: int) -> None:
        """The power switch's own address on the sandbox network: on the bridge, so a node whose cable is
        cut cannot reach it, exactly as it cannot reach its peers."""
        run(["ip", "-n", self.bridge_ns, "addr", "replace", f"{address}/{prefixlen}", "dev", BRIDGE])

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
