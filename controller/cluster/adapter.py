"""A live cluster as seen from one node: the CIB, the status, quorum and cmap."""

from __future__ import annotations

from lxml import etree

from controller.cib.xml import parse_xml_bytes
from controller.cluster.models import ClusterStatus, QuorumInfo, parse_crm_mon, parse_quorumtool
from controller.cluster.runner import ToolRunner


class LiveCluster:
    def __init__(self, runner: ToolRunner | None = None) -> None:
        self.runner = runner or ToolRunner()

    def read_cib(self, scope: str | None = None) -> etree._Element:
        """The whole CIB (or one section) as the cluster holds it now."""
        argv = ["cibadmin", "--query", "--local"]
        if scope:
            argv += ["--scope", scope]
        r = self.runner.run(argv, timeout=30)
        return parse_xml_bytes(r.stdout.encode(), source="cibadmin --query")

    def patch(self, patch_xml: str) -> None:
        """Apply a v2 patchset atomically (all of it or nothing)."""
        self.runner.run(["cibadmin", "--patch", "--xml-pipe"], input=patch_xml, timeout=60)

    def read_file(self, path: str) -> str | None:
        """A file on the node (e.g. /etc/corosync/corosync.conf), or None when it does not exist."""
        r = self.runner.run(["cat", "--", path], timeout=15, check=False)
        return r.stdout if r.returncode == 0 else None

    def wait_settled(self, timeout: float) -> bool:
        """Until no transition is in progress (crm_resource --wait); False when the timeout ran out."""
        r = self.runner.run(["crm_resource", "--wait", f"--timeout={int(max(timeout, 1))}s"],
                            timeout=timeout + 15, check=False)
        return r.returncode == 0

    def status(self) -> ClusterStatus:
        r = self.runner.run(["crm_mon", "--one-shot", "--inactive", "--output-as=xml"], timeout=30)
        return parse_crm_mon(r.stdout)

    def quorum(self) -> QuorumInfo:
        # Exit 0 quorate, 2 not quorate (both are answers); anything else is an error.
        r = self.runner.run(["corosync-quorumtool", "-s"], timeout=15, ok_codes=(0, 2))
        return parse_quorumtool(r.stdout)

    def cmap_get(self, key: str) -> str | None:
        r = self.runner.run(["corosync-cmapctl", "-g", key], timeout=15, check=False)
        if r.returncode != 0:
            return None
        # "totem.token (u32) = 3000"
        _, _, value = r.stdout.strip().partition(" = ")
        return value

    def cmap_prefix(self, prefix: str) -> dict[str, str]:
        r = self.runner.run(["corosync-cmapctl", prefix], timeout=15)
        out: dict[str, str] = {}
        for line in r.stdout.splitlines():
            key_type, sep, value = line.partition(" = ")
            if sep:
                out[key_type.split(" (")[0]] = value
        return out
