"""Taking a snapshot on a node, and reading one anywhere as a cluster that cannot be written.

`take_snapshot` reads, through LiveCluster, everything `plan` reads (controller/snapshot.py names it).
`SnapshotCluster` is a LiveCluster whose reads are answered from a snapshot and whose writes raise
OffCluster; its runner runs only the tools that work without a cluster (crm_simulate on the CIB given
on stdin, `corosync -t` on a candidate file, crm_verify), so nothing off the cluster can reach a
cluster, this machine's own included.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from lxml import etree

from controller import __version__
from controller.cluster.adapter import LiveCluster
from controller.cluster.agents import PacemakerAgents, SnapshotAgentCatalog
from controller.cluster.corosync_test import CorosyncTest, local_corosync_check
from controller.cluster.models import ClusterStatus, QuorumInfo
from controller.cluster.runner import ToolRunner
from controller.command import Result
from controller.errors import HaGitopsError
from controller.snapshot import LastWrite, Snapshot, SnapshotSettings, SnapshotVersions

CMAP_RUNTIME = "runtime.config.totem."  # the timings corosync runs with (token, consensus, ...)
# What runs off the cluster: tools that read only what they are given.
OFFLINE_TOOLS = frozenset({"crm_simulate", "crm_verify", "corosync"})


class OffCluster(HaGitopsError):
    """Asked of a snapshot what only a live cluster can do (a write, a wait, a file it does not hold)."""


class OfflineRunner(ToolRunner):
    """Runs crm_simulate, crm_verify and `corosync ... -t` locally; refuses every other tool."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None,
            check: bool = True, ok_codes: Sequence[int] = (0,),
            env: Mapping[str, str] | None = None) -> Result:
        tool = argv[0] if argv else ""
        if tool not in OFFLINE_TOOLS or (tool == "corosync" and "-t" not in argv):
            raise OffCluster(f"`{' '.join(argv)}` needs the cluster; {self.where} can only be read")
        return super().run(argv, timeout=timeout, input=input, check=check, ok_codes=ok_codes, env=env)


class SnapshotCluster(LiveCluster):
    """A cluster node as a snapshot saw it: read-only, usable where no cluster runs."""

    def __init__(self, snapshot: Snapshot, *, source: str = "snapshot") -> None:
        self.snapshot = snapshot
        self.where = f"the snapshot of {snapshot.node} taken {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC" \
                     f" ({source})"
        super().__init__(OfflineRunner(self.where))
        self._cib = snapshot.cib_element()

    def _refuse(self, what: str) -> OffCluster:
        return OffCluster(f"{what} needs the cluster; {self.where} can only be read")

    # ---- reads
    def read_cib_text(self, scope: str | None = None) -> str:
        return etree.tostring(self.read_cib(scope), encoding="unicode")

    def read_cib(self, scope: str | None = None) -> etree._Element:
        if not scope:
            return copy.deepcopy(self._cib)
        found = self._cib.find(f".//{scope}")
        if found is None:
            raise self._refuse(f"the CIB section {scope!r} (not in the snapshot)")
        return copy.deepcopy(found)

    def read_cib_head(self) -> etree._Element:
        head = etree.Element("cib")
        for k, v in self._cib.attrib.items():
            head.set(k, v)
        return head

    def status_xml(self) -> str:
        return self.snapshot.crm_mon

    def status(self) -> ClusterStatus:
        return self.snapshot.status()

    def quorum_text(self) -> str:
        return self.snapshot.quorum

    def quorum(self) -> QuorumInfo:
        return self.snapshot.quorum_info()

    def read_file(self, path: str) -> str | None:
        if path != self.snapshot.corosync_path:
            raise self._refuse(f"reading {path} (the snapshot holds {self.snapshot.corosync_path} only)")
        return self.snapshot.corosync_conf

    def cmap_get(self, key: str) -> str | None:
        return self.snapshot.cmap.get(key)

    def cmap_prefix(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.snapshot.cmap.items() if k.startswith(prefix)}

    def tool_versions(self) -> dict[str, str | None]:
        return self.snapshot.versions.model_dump(exclude={"ha_gitops"})

    def agent_catalog(self) -> PacemakerAgents:
        return SnapshotAgentCatalog(self.snapshot.agents)

    def corosync_check(self) -> CorosyncTest | None:
        # This machine's corosync checks syntax and values; it is not a node, so the node checks are
        # left to the nodes (one warning says so).
        return CorosyncTest(self.runner) if local_corosync_check() is not None else None

    # ---- everything that acts on (or waits for) a live cluster
    def wait_settled(self, timeout: float) -> bool:
        raise self._refuse("waiting for the cluster to settle")

    def set_epoch(self, epoch: int) -> None:
        raise self._refuse("setting the CIB epoch")

    def patch(self, patch_xml: str) -> None:
        raise self._refuse("patching the CIB")

    def reload_corosync(self, timeout: float = 30) -> str:
        raise self._refuse("reloading corosync")

    def set_expected_votes(self, votes: int, timeout: float = 30) -> bool:
        raise self._refuse("setting expected votes")

    def set_node_attribute(self, node: str, name: str, value: str, timeout: float = 30) -> None:
        raise self._refuse("setting a node attribute")

    def set_standby(self, node: str, on: bool, *, lifetime: str = "reboot", timeout: float = 30) -> None:
        raise self._refuse("standby")

    def restart_stack(self, service_command: Sequence[str], *, stop_timeout: float = 240,
                      start_timeout: float = 120, peers_timeout: float | None = None) -> bool:
        raise self._refuse("restarting corosync and pacemaker")


def take_snapshot(cluster: LiveCluster, settings: SnapshotSettings, *,
                  corosync_path: str = "/etc/corosync/corosync.conf",
                  last_write: LastWrite | None = None) -> Snapshot:
    """Everything `plan` reads from this node, read now."""
    cib = cluster.read_cib_text()
    versions = cluster.tool_versions()
    return Snapshot(
        node=settings.node_name, cib=cib, crm_mon=cluster.status_xml(), quorum=cluster.quorum_text(),
        corosync_path=corosync_path, corosync_conf=cluster.read_file(corosync_path),
        cmap=cluster.cmap_prefix(CMAP_RUNTIME), agents=cluster.agent_catalog().inventory(),
        versions=SnapshotVersions(**versions, ha_gitops=__version__), settings=settings,
        last_write=last_write)
