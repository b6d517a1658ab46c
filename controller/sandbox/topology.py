"""What the sandbox builds, derived from a desired cluster folder (pure: text in, spec out)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from controller.errors import InputError


class NodeSpec(BaseModel):
    name: str
    address: str
    nodeid: int
    index: int  # 1-based position in the nodelist: names the veth on the bridge


ForgeRemote = Literal["ssh", "https"]
FORGE = "forge"  # the forge's name for `sandbox exec` and the CLI (no cluster node may have it)
FORGE_GIT_USER = "git"
FORGE_SSH_PORT = 22
FORGE_HTTPS_PORT = 443
AGENT_HOOK_PORT = 9811  # where the forge sends push webhooks (the agent's http_listen)


class SandboxAgents(BaseModel):
    """`sandbox up --agents`: one ha-gitops agent per node, following this repository."""

    repo_url: str
    branch: str = "main"
    path: str = "."
    poll_interval: float = 30.0
    drift_debounce: float = 0.3
    watch_debounce: float = 0.1
    drift_mode: str = "correct"
    warm_crm: str = "dc"
    audit_url: str | None = None  # default: one SQLite file per node; a postgresql:// URL: one shared trail
    watch_source: bool = True  # off: the agents see a push only by a poll or a webhook
    http_listen: str | None = None  # the agents' HTTP listener (default: the agent's own, loopback only)
    webhook_secret: str | None = None  # written to each node's /etc/ha-gitops/webhook.secret (0600)
    # `--agent-config FILE`: a TOML fragment merged into every node's agent.toml (controller/sandbox/
    # agent_config.py): production settings, rehearsed. Kept as text: it may hold credentials.
    agent_config: str = ""
    agent_config_source: str = "--agent-config"
    retry_initial: float | None = None  # the agents' fetch retry backoff (default: the agent's)
    retry_max: float | None = None
    # `--forge`: repo_url is the forge's (the repository given seeds it), reached over `remote`, with a
    # deploy key and a pinned host key (ssh) or the sandbox's CA and a token (https).
    forge: bool = False
    remote: ForgeRemote = "ssh"
    # The forge's push webhooks: the agent's HTTP listener and its secret in agent.toml. Off until the agent
    # knows those settings (AgentSettings forbids unknown keys).
    webhooks: bool = False
    # A directory of <node>.key age identities to use instead of new ones (preview encrypts the folder's
    # secrets to them before the sandbox exists).
    age_identity_dir: str | None = None


class ForgeSpec(BaseModel):
    """`sandbox up --forge`: a git server on the sandbox network (sshd + https), seeded from `seed`."""

    address: str
    seed: str  # the repository cloned (bare) into the forge on `up`
    repo: str  # the bare repository's path on the host (and in the forge): <state dir>/forge/cluster.git

    @property
    def ssh_url(self) -> str:
        return f"ssh://{FORGE_GIT_USER}@{self.address}{self.repo}"

    @property
    def https_url(self) -> str:
        return f"https://{self.address}/{Path(self.repo).name}"

    def url(self, remote: ForgeRemote) -> str:
        return self.ssh_url if remote == "ssh" else self.https_url


# How a fence request reaches the sandbox's power switch. "cluster": over the sandbox network, to the switch's
# address on the bridge (a cut node reaches no switch, as stonith:external/ssh reaches no peer). "oob": a
# unix socket every node sees, which models a separate management network (a BMC LAN) no cut touches.
FencingNetwork = Literal["cluster", "oob"]
POWER_SWITCH_PORT = 623  # the BMC's port (IPMI); TCP here, inside the sandbox's own namespaces


class SandboxSpec(BaseModel):
    cluster_dir: str
    cluster_name: str
    prefixlen: int
    nodes: list[NodeSpec]
    corosync_conf: str
    agents: SandboxAgents | None = None
    fencing_network: FencingNetwork = "cluster"
    power_switch: str = ""  # the switch's address on the sandbox network (set by build_spec)
    forge_address: str = ""  # the forge's, if there is one (the next free address; set by build_spec)
    forge: ForgeSpec | None = None

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InputError(f"no node {name!r} in the sandbox (nodes: {', '.join(n.name for n in self.nodes)})")


def hosts_text(spec: SandboxSpec) -> str:
    """The nodes' /etc/hosts: loopback, then every node's name at its sandbox address (nothing of the
    host's own file: a name the host resolves elsewhere must not leak into the cluster)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{n.address}\t{n.name}" for n in spec.nodes]
    if spec.forge is not None:
        lines.append(f"{spec.forge.address}\t{FORGE}")
    return "\n".join(lines) + "\n"


_CRM_NODE = re.compile(r"^node\s+(?:\$id=)?(?:(?P<id>\d+):\s*)?(?P<name>[\w.-]+)", re.M)


def crm_node_names(cib_crm: str) -> dict[int, str]:
    """Node id -> uname from `node ID: NAME` lines of crm syntax."""
    return {int(m["id"]): m["name"] for m in _CRM_NODE.finditer(cib_crm) if m["id"]}


def xml_node_names(cib_xml: bytes) -> dict[int, str]:
    from controller.cib.xml import parse_xml_bytes

    root = parse_xml_bytes(cib_xml, source="cib.xml")
    out: dict[int, str] = {}
    for node in root.iter("node"):
        nid, uname = node.get("id"), node.get("uname")
        if nid and uname and nid.isdigit():
            out[int(nid)] = uname
    return out


def nodeid_from_address(address: str, clear_high_bit: bool) -> int:
    """Corosync's node id when `nodeid` is not set: the IPv4 address as an integer."""
    value = int(ipaddress.IPv4Address(address))
    return value & 0x7FFFFFFF if clear_high_bit else value


def build_spec(cluster_dir: str | Path) -> SandboxSpec:
    from controller.corosync.document import parse_corosync

    folder = Path(cluster_dir)
    conf_path = folder / "corosync.conf"
    try:
        conf_text = conf_path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(conf_path)) from exc
    root = parse_corosync(conf_text, source=str(conf_path)).root
    names: dict[int, str] = {}
    if (folder / "cib.crm").exists():
        names = crm_node_names((folder / "cib.crm").read_text())
    elif (folder / "cib.xml").exists():
        names = xml_node_names((folder / "cib.xml").read_bytes())
    totem = next(iter(root.sections("totem")), None)
    clear_high = (totem.get("clear_node_high_bit") if totem else None) == "yes"
    cluster_name = (totem.get("cluster_name") if totem else None) or "sandbox"
    prefixlen = 24
    iface = next(iter(totem.sections("interface")), None) if totem else None
    nodes: list[NodeSpec] = []
    nodelist = next(iter(root.sections("nodelist")), None)
    for i, node in enumerate(nodelist.sections("node") if nodelist else [], start=1):
        addr = node.get("ring0_addr")
        if not addr:
            raise InputError("node without ring0_addr", file=str(conf_path), line=node.line)
        try:
            ipaddress.IPv4Address(addr)
        except ValueError as exc:
            raise InputError(f"sandbox needs IPv4 ring0_addr, got {addr!r}", file=str(conf_path),
                             line=node.line) from exc
        nid_text = node.get("nodeid")
        nid = int(nid_text) if nid_text else nodeid_from_address(addr, clear_high)
        name = node.get("name") or names.get(nid) or f"node{i}"
        nodes.append(NodeSpec(name=name, address=addr, nodeid=nid, index=i))
    if not nodes:
        raise InputError("corosync.conf has no nodelist: the sandbox needs one node entry per node",
                         file=str(conf_path))
    if iface is not None and iface.get("bindnetaddr"):
        # Nodes share one subnet on the sandbox bridge; a bindnetaddr ending in .0 implies /24.
        prefixlen = 24
    texts = [conf_text, *((folder / f).read_text() for f in ("cib.crm", "cib.xml") if (folder / f).exists())]
    spare = free_addresses(nodes[0].address, prefixlen, texts, 2)
    return SandboxSpec(cluster_dir=str(folder.resolve()), cluster_name=cluster_name, prefixlen=prefixlen,
                       nodes=nodes, corosync_conf=conf_text, power_switch=spare[0], forge_address=spare[1])


_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def free_addresses(node_address: str, prefixlen: int, texts: list[str], count: int) -> list[str]:
    """The `count` highest host addresses of the nodes' subnet that no node, VIP or other address in the
    cluster's files uses: the sandbox's own machines (power switch, forge) must never answer for an
    address a resource can hold."""
    net = ipaddress.IPv4Network(f"{node_address}/{prefixlen}", strict=False)
    used = {m for t in texts for m in _IPV4.findall(t)}
    found: list[str] = []
    for host in reversed(list(net.hosts())):
        if str(host) not in used:
            found.append(str(host))
            if len(found) == count:
                return found
    raise InputError(f"no {count} free addresses in {net} for the sandbox's power switch and forge")


def power_switch_address(node_address: str, prefixlen: int, texts: list[str]) -> str:
    """The highest free host address of the nodes' subnet (see free_addresses)."""
    return free_addresses(node_address, prefixlen, texts, 1)[0]
