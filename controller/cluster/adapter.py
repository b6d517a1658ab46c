"""A live cluster as seen from one node: the CIB, the status, quorum and cmap, and the tools that act.

Every Pacemaker/Corosync argument list lives here (like pcs's lib "live" layer): callers ask for an
effect, never build argv. Every call has a timeout; a failing tool raises CommandError carrying its
stderr (controller/command.py), unless the method says the exit code is an answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lxml import etree
from pydantic import BaseModel

from controller.cib.xml import parse_xml_bytes
from controller.cluster.models import ClusterStatus, QuorumInfo, parse_crm_mon, parse_quorumtool
from controller.cluster.runner import ToolRunner
from controller.command import Result
from controller.errors import CommandError

if TYPE_CHECKING:
    from controller.cluster.agents import PacemakerAgents
    from controller.cluster.corosync_test import CorosyncTest

# --run: the scheduler's actions, not executed. --simulate also executes the transition on a copy of the
# CIB, which prints the same <actions> but grows faster than the square of what it starts (200 new primitives:
# 4.4 s, 400: 22 s, against 0.1 s), and aborts on valid CIBs (a Pacemaker 2.1.5 assertion on 6 of 285
# scheduler regression CIBs): bench/results/bounded_work.md.
SIMULATE_ARGV = ("crm_simulate", "--run", "--xml-pipe", "--output-as=xml")
# The <cib> element alone (its attributes: have-quorum, dc-uuid, the version), not the 100s of kB below it.
CIB_HEAD_ARGV = ("cibadmin", "--query", "--local", "--xpath", "/cib", "--no-children")
# "Pacemaker 2.1.5", "Corosync Cluster Engine, version '3.1.7'", "crm 4.4.0"
VERSION_ARGV = {"pacemaker": ("pacemakerd", "--version"), "corosync": ("corosync", "-v"),
                "crmsh": ("crm", "--version")}
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
# Corosync's process groups, one "GROUP PID NODEID" line per member.
CPGTOOL_ARGV = ("corosync-cpgtool", "-e", "-d", " ")  # -e: group names unescaped (NUL-ended)
# The group every pacemaker-controld joins (Pacemaker daemons/controld: crm_cluster_connect with
# crm_system_name "crmd"), present while the node's controller runs.
CONTROLLER_GROUP = "crmd"


def controller_members(cpgtool: str) -> int:
    """The members of the controllers' group in `corosync-cpgtool -e -d " "` output."""
    return sum(1 for line in cpgtool.splitlines()
               if line.split(" ", 1)[0].rstrip("\x00") == CONTROLLER_GROUP)


class Leadership(BaseModel):
    """Whether this node may write the CIB, as the cluster says it at this moment (LiveCluster.leadership)."""

    quorate: bool              # votequorum (corosync-quorumtool): the first to know when quorum goes
    cib_quorate: bool | None   # the CIB's have-quorum (Pacemaker's controller sets it a moment later)
    node_id: str | None        # this node's corosync node id (= its Pacemaker node id)
    dc_id: str | None          # the CIB's dc-uuid: the DC's node id, None while there is none
    seconds: float = 0.0       # what asking cost

    @property
    def has_quorum(self) -> bool:
        # Either source saying "no" is enough: a write in a partition without quorum can win the merge
        # after heal and overwrite what the majority applied meanwhile.
        return self.quorate and self.cib_quorate is not False

    @property
    def is_dc(self) -> bool:
        return self.node_id is not None and self.dc_id == self.node_id


class LiveCluster:
    def __init__(self, runner: ToolRunner | None = None) -> None:
        self.runner = runner or ToolRunner()

    def read_cib(self, scope: str | None = None) -> etree._Element:
        """The whole CIB (or one section) as the cluster holds it now."""
        return parse_xml_bytes(self.read_cib_text(scope).encode(), source="cibadmin --query")

    def read_cib_text(self, scope: str | None = None) -> str:
        """`cibadmin --query --local` as it prints it (a snapshot keeps it as is)."""
        argv = ["cibadmin", "--query", "--local"]
        if scope:
            argv += ["--scope", scope]
        return self.runner.run(argv, timeout=30).stdout

    def read_cib_head(self) -> etree._Element:
        """The <cib> element without its children: the version, have-quorum and dc-uuid, cheaply."""
        r = self.runner.run(list(CIB_HEAD_ARGV), timeout=15)
        root = parse_xml_bytes(r.stdout.encode(), source="cibadmin --query --xpath /cib")
        # An XPath query may wrap its match (<xpath-query>); the element itself is what we want.
        return root if root.tag == "cib" else next(iter(root.iter("cib")), root)

    def leadership(self, *, need_dc: bool = True) -> Leadership:
        """Is this partition quorate, and (need_dc) is this node its DC: asked just before a CIB write.

        Quorum from votequorum itself (corosync-quorumtool), which knows first; the DC from the CIB's
        dc-uuid (what Pacemaker's controller records on election). A quorum-only check (an operator's
        verb, which may write from any node) skips the CIB query.
        """
        started = time.monotonic()
        q = self.quorum()
        head = self.read_cib_head() if need_dc else None
        have = head.get("have-quorum") if head is not None else None
        return Leadership(quorate=q.quorate, node_id=str(q.node_id) if q.node_id is not None else None,
                          cib_quorate=None if have is None else have in ("1", "true"),
                          dc_id=head.get("dc-uuid") if head is not None else None,
                          seconds=round(time.monotonic() - started, 4))

    def set_epoch(self, epoch: int) -> None:
        """Set the configuration epoch (cibadmin --modify on the <cib> element: Pacemaker takes it as
        given, where a patch's target version is recomputed as epoch + 1)."""
        self.runner.run(["cibadmin", "--modify", "--xml-text", f'<cib epoch="{int(epoch)}"/>'], timeout=60)

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
        return parse_crm_mon(self.status_xml())

    def status_xml(self) -> str:
        """`crm_mon --one-shot --inactive --output-as=xml`, unparsed."""
        return self.runner.run(["crm_mon", "--one-shot", "--inactive", "--output-as=xml"], timeout=30).stdout

    def status_text(self) -> str:
        """crm_mon as people read it: inactive resources, fail counts, and the fencing history."""
        r = self.runner.run(["crm_mon", "--one-shot", "--inactive", "--failcounts", "--fence-history=1"],
                            timeout=30, check=False)
        return r.stdout if r.returncode == 0 else f"crm_mon failed ({r.returncode}): {r.stderr.strip()}"

    def quorum(self) -> QuorumInfo:
        return parse_quorumtool(self.quorum_text())

    def quorum_text(self) -> str:
        """`corosync-quorumtool -s`, unparsed."""
        # Exit 0 quorate, 2 not quorate (both are answers); anything else is an error.
        return self.runner.run(["corosync-quorumtool", "-s"], timeout=15, ok_codes=(0, 2)).stdout

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

    def tool_versions(self) -> dict[str, str | None]:
        """The versions of Pacemaker, Corosync and crmsh here (None: not installed or no answer)."""
        found: dict[str, str | None] = {}
        for name, argv in VERSION_ARGV.items():
            try:
                r = self.runner.run(list(argv), timeout=15, check=False)
            except CommandError:  # not installed
                found[name] = None
                continue
            m = _VERSION.search(r.stdout + r.stderr) if r.returncode == 0 else None
            found[name] = m.group(1) if m else None
        return found

    # ------------------------------------------------------------------ validation on this node
    def agent_catalog(self) -> PacemakerAgents:
        """Which resource and fence agents exist, asked of this node's Pacemaker."""
        from controller.cluster.agents import PacemakerAgents

        return PacemakerAgents(self.runner)

    def corosync_check(self) -> CorosyncTest | None:
        """`corosync -t` on a candidate corosync.conf, run where this node's corosync is."""
        from controller.cluster.corosync_test import CorosyncTest

        return CorosyncTest(self.runner)

    # ------------------------------------------------------------------ corosync
    def reload_corosync(self, timeout: float = 30) -> str:
        """`corosync-cfgtool -R`: every member re-reads its corosync.conf. Its output, for the record.

        It exits 0 even when a node cannot parse its file or a key cannot change at run time: the exit
        code proves nothing, each node's cmap does.
        """
        r = self.runner.run(["corosync-cfgtool", "-R"], timeout=timeout)
        return (r.stdout + r.stderr).strip()

    def check_corosync_conf(self, path: str, timeout: float = 30) -> str | None:
        """`corosync -c PATH -t` on this node: None when corosync accepts the file, else its complaint."""
        r = self.runner.run(["corosync", "-c", path, "-t"], timeout=timeout, check=False)
        if r.returncode == 0:
            return None
        out = (r.stderr + r.stdout).strip()
        return f"corosync -t exited {r.returncode}" + (f": {out}" if out else "")

    def set_expected_votes(self, votes: int, timeout: float = 30) -> bool:
        """`corosync-quorumtool -e VOTES` (votequorum's expected votes now); False when it refused."""
        r = self.runner.run(["corosync-quorumtool", "-e", str(votes)], timeout=timeout, check=False)
        return r.returncode == 0

    # ------------------------------------------------------------------ node attributes
    def set_node_attribute(self, node: str, name: str, value: str, timeout: float = 30) -> None:
        """A permanent node attribute (configuration section: replicated, survives restarts)."""
        self.runner.run(["crm_attribute", "-t", "nodes", "-N", node, "-n", name, "-v", value],
                        timeout=timeout)

    def set_standby(self, node: str, on: bool, *, lifetime: str = "reboot", timeout: float = 30) -> None:
        """Put `node` in standby (or take it out: the attribute is deleted) for `lifetime`."""
        argv = ["crm_attribute", "-N", node, "-n", "standby", "-l", lifetime]
        self.runner.run(argv + (["-v", "on"] if on else ["-D"]), timeout=timeout)

    # ------------------------------------------------------------------ services
    def restart_stack(self, service_command: Sequence[str], *, stop_timeout: float = 240,
                      start_timeout: float = 120, peers_timeout: float | None = None) -> bool:
        """Restart corosync, then start pacemaker, with the node's service command (systemctl).

        `systemctl restart corosync` stops pacemaker (it requires corosync) but does not start it.
        With `peers_timeout` (every node restarting at once): pacemaker stops first, and corosync restarts
        once no node's controller is left in corosync's membership, or after peers_timeout seconds (False
        then). A node whose corosync came back while another's pacemaker was still stopping formed a
        cluster in which that node's last state is "unclean", and fenced it as it came back (seen in the
        sandbox); pcs `cluster stop --all` stops pacemaker everywhere before corosync for the same reason.
        """
        alone = True
        if peers_timeout is not None:
            self.runner.run([*service_command, "stop", "pacemaker"], timeout=stop_timeout)
            deadline = time.monotonic() + peers_timeout
            alone = self.controllers_running() == 0
            while not alone and time.monotonic() < deadline:
                time.sleep(0.5)
                alone = self.controllers_running() == 0
        self.runner.run([*service_command, "restart", "corosync"], timeout=stop_timeout)
        self.runner.run([*service_command, "start", "pacemaker"], timeout=start_timeout)
        return alone

    def controllers_running(self) -> int:
        """How many Pacemaker controllers are in corosync's membership now (0 when corosync is down)."""
        r = self.runner.run(list(CPGTOOL_ARGV), timeout=15, check=False)
        return controller_members(r.stdout) if r.returncode == 0 else 0

    # ------------------------------------------------------------------ scheduler
    def simulate(self, cib_xml: str, *, scratch_dir: str, timeout: float = 60) -> Result:
        """`crm_simulate --run --xml-pipe --output-as=xml` on `cib_xml` (stdin): the scheduler run
        offline, nothing sent to the cluster, its actions listed (not executed). The exit code is part
        of the answer (the caller reads crm_simulate's XML status), so it does not raise on one.
        crm_simulate keeps a working copy of its input ("shadow.PID"), by default beside the live CIB:
        CIB_shadow_dir puts it in scratch_dir.
        """
        return self.runner.run(SIMULATE_ARGV, timeout=timeout, input=cib_xml,
                               env={"CIB_shadow_dir": scratch_dir}, check=False)
