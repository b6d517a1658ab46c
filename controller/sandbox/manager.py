"""The sandbox as the CLI and the tests use it: up, down, status, exec, failure injection."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from controller.cluster.adapter import LiveCluster
from controller.cluster.runner import ToolRunner
from controller.command import Result, run
from controller.errors import HaGitopsError
from controller.observed import ClusterStatus
from controller.sandbox.fence_agent import render_plugin
from controller.sandbox.layout import Layout
from controller.sandbox.network import SandboxNetwork
from controller.sandbox.topology import (
    FORGE,
    POWER_SWITCH_PORT,
    FencingNetwork,
    ForgeSpec,
    NodeSpec,
    SandboxAgents,
    SandboxSpec,
    build_spec,
    hosts_text,
)


class SandboxError(HaGitopsError):
    pass


class NodeStatus(BaseModel):
    name: str
    address: str
    nodeid: int
    powered: bool
    cut: bool
    init_pid: int | None
    corosync: bool | None = None
    pacemaker: bool | None = None
    agent: bool | None = None
    agent_restarts: int | None = None  # automatic restarts since the node booted (systemd's NRestarts)
    agent_restart_in: float | None = None  # seconds until a scheduled restart (systemd: auto-restart)
    cluster_online: bool | None = None
    standby: bool | None = None
    is_dc: bool | None = None
    age_recipient: str | None = None  # the node's age identity's recipient (agents only), for [secrets]


class ForgeStatus(BaseModel):
    address: str
    ssh_url: str
    https_url: str
    ca_file: str  # the CA that signed the forge's https certificate
    repo: str  # the bare repository, on the host and in the forge
    work: str  # a clone inside the forge to commit and push from (`sandbox exec forge -- git -C WORK ...`)
    seed: str
    running: bool
    init_pid: int | None = None
    ssh: bool | None = None  # sshd running
    https: bool | None = None  # Apache running
    hooks_log: str


class SandboxStatus(BaseModel):
    running: bool
    state_dir: str
    cluster_dir: str | None = None
    quorate: bool | None = None
    dc: str | None = None
    fencing_network: str | None = None
    power_switch: str | None = None  # where fence requests go: ADDRESS:PORT, or the unix socket (oob)
    nodes: list[NodeStatus] = []
    resources: list[dict[str, Any]] = []
    forge: ForgeStatus | None = None


class UpResult(BaseModel):
    seconds: float
    dc: str
    nodes: list[str]
    state_dir: str


class Sandbox:
    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.layout = Layout(state_dir)
        self.net = SandboxNetwork(self.layout.tag)

    # ------------------------------------------------------------ state
    def spec(self) -> SandboxSpec:
        if not self.layout.spec.exists():
            raise SandboxError(f"no sandbox in {self.layout.root} (run `ha-gitops sandbox up`)")
        return SandboxSpec.model_validate_json(self.layout.spec.read_text())

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.layout.state.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def supervisor_alive(self) -> bool:
        pid = self._state().get("supervisor_pid")
        return isinstance(pid, int) and pid > 0 and _pid_alive(pid) and self.layout.control_socket.exists()

    def request(self, op: str, node: str | None = None, timeout: float = 60) -> dict[str, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.layout.control_socket))
        except OSError as exc:
            raise SandboxError(f"sandbox supervisor not reachable at {self.layout.control_socket}: {exc}"
                               " (is the sandbox up?)") from exc
        with s, s.makefile("rw") as f:
            f.write(json.dumps({"op": op, "node": node}) + "\n")
            f.flush()
            resp = _answer(f.readline())
        if not resp.get("ok"):
            raise SandboxError(f"{op} {node or ''}: {resp.get('error')}")
        return resp

    def node_request(self, node: str, req: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
        """Ask a node's init (PID 1 inside the node) to start, stop or kill its cluster services."""
        self.spec().node(node)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.layout.node_dir(node) / "init.sock"))
        except OSError as exc:
            raise SandboxError(f"node {node} is not running (powered off?): {exc}") from exc
        with s, s.makefile("rw") as f:
            f.write(json.dumps(req) + "\n")
            f.flush()
            resp = _answer(f.readline())
        if not resp.get("ok"):
            raise SandboxError(f"node {node}: {resp.get('error')}")
        return resp

    def forge_request(self, op: str, service: str = "all", timeout: float = 30) -> dict[str, Any]:
        """Start, stop or ask about the forge's daemons (service: ssh, https or all)."""
        from controller.sandbox.forge import ForgeLayout
        from controller.sandbox.supervisor import forge_request

        if self.spec().forge is None:
            raise SandboxError(f"the sandbox in {self.layout.root} has no forge (`sandbox up --forge`)")
        try:
            resp = forge_request(ForgeLayout(self.layout.root).control_socket,
                                 {"op": op, "service": service}, timeout=timeout)
        except (OSError, ValueError) as exc:
            raise SandboxError(f"the forge is not running: {exc}") from exc
        if not resp.get("ok"):
            raise SandboxError(f"forge {op} {service}: {resp.get('error')}")
        return resp

    def forge_stop(self, service: str = "all") -> dict[str, Any]:
        return self.forge_request("stop", service)

    def forge_start(self, service: str = "all") -> dict[str, Any]:
        return self.forge_request("start", service)

    def init_pid(self, node: str) -> int:
        if node == FORGE:
            pid = (self._state().get("forge") or {}).get("init_pid")
            if self.spec().forge is None or not pid or not _pid_alive(int(pid)):
                raise SandboxError(f"the sandbox in {self.layout.root} has no running forge")
            return int(pid)
        self.spec().node(node)
        pid = self._state().get("nodes", {}).get(node, {}).get("init_pid")
        if not pid or not _pid_alive(int(pid)):
            raise SandboxError(f"node {node} is powered off")
        return int(pid)

    # ------------------------------------------------------------ running things inside a node
    def prefix(self, node: str) -> list[str]:
        return ["nsenter", "-t", str(self.init_pid(node)), "-m", "-u", "-i", "-n", "-p", "--"]

    def runner(self, node: str) -> ToolRunner:
        return ToolRunner(lambda: self.prefix(node))

    def cluster(self, node: str) -> LiveCluster:
        return LiveCluster(self.runner(node))

    def exec(self, node: str, argv: Sequence[str], *, timeout: float = 120, check: bool = False,
             input: str | None = None) -> Result:
        return run([*self.prefix(node), *argv], timeout=timeout, check=check, input=input)

    # ------------------------------------------------------------ up / down
    def up(self, cluster_dir: str | Path = "desired/kamailio", *, timeout: float = 60,
           agents: SandboxAgents | None = None, fencing_network: FencingNetwork = "cluster",
           forge_seed: str | None = None) -> UpResult:
        """Start the cluster; with `agents`, one ha-gitops agent per node following that repository
        (the repository must be on a path the nodes see: not under /tmp or /run, which are per node).
        `fencing_network`: fence requests over the sandbox network ("cluster") or out of band ("oob").
        A forge (`forge_seed`, or agents with `forge`): a git server on the sandbox network seeded from that
        repository (or the agents' repo_url), which the agents then follow over ssh or https."""
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (namespaces, mounts, veth)")
        for tool in ("corosync", "pacemakerd", "nsenter", "unshare", "ip"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} not found: run `make setup` (installs pacemaker, corosync, ...)")
        spec = build_spec(cluster_dir).model_copy(update={"fencing_network": fencing_network})
        if agents is not None and agents.forge and forge_seed is None:
            forge_seed = agents.repo_url
        if forge_seed is not None:
            from controller.sandbox.forge import check_tools

            if any(n.name == FORGE for n in spec.nodes):
                raise SandboxError(f"a cluster node is named {FORGE!r}: the forge needs that name")
            check_tools()
            forge = ForgeSpec(address=spec.forge_address, seed=_seed_url(forge_seed),
                              repo=str(self.layout.root / "forge" / "cluster.git"))
            spec = spec.model_copy(update={"forge": forge})
            if agents is not None:
                agents = agents.model_copy(update={"forge": True, "repo_url": forge.url(agents.remote)})
        if agents is not None:
            if not agents.forge:
                _check_repo(agents)
            spec = spec.model_copy(update={"agents": agents})
            _check_agent_config(spec, self.layout)
        if self.supervisor_alive():
            raise SandboxError(f"a sandbox is already running in {self.layout.root}; "
                               "`ha-gitops sandbox down` first")
        self._force_cleanup()
        started = time.monotonic()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.spec.write_text(spec.model_dump_json(indent=1))
        self.layout.fence_plugin.write_text(
            render_plugin(control_socket=str(self.layout.control_socket)) if fencing_network == "oob"
            else render_plugin(switch=(spec.power_switch, POWER_SWITCH_PORT)))
        self.layout.fence_plugin.chmod(0o755)
        self.layout.hosts.write_text(hosts_text(spec))
        log = open(self.layout.supervisor_log, "ab")  # noqa: SIM115 - handed to the daemon
        # The package must be importable from the daemon and from inside the nodes (same filesystem).
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        subprocess.Popen([sys.executable, "-m", "controller.sandbox.supervisor", str(self.layout.root)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         close_fds=True, env=env)
        log.close()
        status = self.wait_healthy(timeout=timeout, expect_online=[n.name for n in spec.nodes])
        assert status.dc is not None
        if spec.forge is not None:
            self._check_forge()
        return UpResult(seconds=round(time.monotonic() - started, 2), dc=status.dc,
                        nodes=[n.name for n in spec.nodes], state_dir=str(self.layout.root))

    def wait_healthy(self, *, timeout: float = 60, expect_online: Sequence[str] | None = None,
                     via: str | None = None) -> ClusterStatus:
        """Until the cluster is quorate with a DC (and the named nodes online), or a clear error."""
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        while time.monotonic() < deadline:
            try:
                spec = self.spec()
                nodes = [via] if via else [n.name for n in spec.nodes]
                for node in nodes:
                    try:
                        st = self.cluster(node).status()
                    except HaGitopsError as exc:
                        last = f"{node}: {exc}"
                        continue
                    online = {n.name for n in st.nodes if n.online}
                    missing = [n for n in (expect_online or []) if n not in online]
                    if st.quorate and st.dc and not missing:
                        return st
                    last = (f"{node}: quorate={st.quorate} dc={st.dc} online={sorted(online)}"
                            + (f" waiting for {missing}" if missing else ""))
                    break
            except HaGitopsError as exc:
                last = str(exc)
            time.sleep(0.25)
        logs = [str(p) for n in self._spec_or_none_nodes() for p in self.layout.node_logs(n)]
        raise SandboxError(f"cluster not quorate with a DC after {timeout:g}s ({last}); logs: "
                           f"{self.layout.supervisor_log} " + " ".join(logs))

    def _check_forge(self) -> None:
        from controller.sandbox.forge import ForgeLayout

        logs = ForgeLayout(self.layout.root).logs
        try:
            st = self.forge_request("status")
        except SandboxError as exc:
            raise SandboxError(f"{exc}; see {logs} and {self.layout.supervisor_log}") from exc
        down = [s for s in ("ssh", "https") if not st.get(s)]
        if down:
            raise SandboxError(f"the forge's {' and '.join(down)} did not start; see {logs}")

    def _spec_or_none_nodes(self) -> list[str]:
        try:
            return [n.name for n in self.spec().nodes]
        except HaGitopsError:
            return []

    def down(self, *, keep_logs: bool = False) -> float:
        started = time.monotonic()
        if self.supervisor_alive():
            with contextlib.suppress(SandboxError, OSError):
                self.request("shutdown", timeout=30)
            pid = self._state().get("supervisor_pid")
            if pid:
                _wait_gone(int(pid), 10)
        self._force_cleanup()
        if self.layout.root.exists():
            if keep_logs:
                for p in self.layout.root.iterdir():
                    if p.name not in ("nodes", "supervisor.log", "forge"):
                        _remove(p)
                forge_dir = self.layout.root / "forge"
                if forge_dir.is_dir():  # its daemons' logs and the webhook deliveries
                    for p in forge_dir.iterdir():
                        if p.name not in ("logs", "hooks.log"):
                            _remove(p)
                for node_dir in self.layout.nodes_dir.glob("*"):
                    for p in node_dir.iterdir():
                        if p.name not in ("logs", "var-log-pacemaker", "var-log-corosync"):
                            _remove(p)
            else:
                shutil.rmtree(self.layout.root, ignore_errors=True)
        return round(time.monotonic() - started, 3)

    def _force_cleanup(self) -> None:
        """Whatever a crashed supervisor left: its recorded processes (by PID) and our namespaces."""
        state = self._state()
        pids = [n.get("init_pid") for n in state.get("nodes", {}).values()]
        pids.append((state.get("forge") or {}).get("init_pid"))
        sup = state.get("supervisor_pid")
        for pid in [*pids, sup]:
            if pid and _pid_alive(int(pid)) and _is_ours(int(pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for pid in [*pids, sup]:
            if pid:
                _wait_gone(int(pid), 5)
        self.net.destroy()
        if self.layout.control_socket.exists():
            self.layout.control_socket.unlink()

    # ------------------------------------------------------------ status
    def status(self) -> SandboxStatus:
        if not self.supervisor_alive():
            return SandboxStatus(running=False, state_dir=str(self.layout.root))
        spec = self.spec()
        sup_all = self.request("status")
        sup, sup_forge = sup_all["nodes"], sup_all.get("forge")
        cluster: ClusterStatus | None = None
        for n in spec.nodes:
            if sup[n.name]["powered"]:
                try:
                    cluster = self.cluster(n.name).status()
                    break
                except HaGitopsError:
                    continue
        nodes = []
        for n in spec.nodes:
            s = sup[n.name]
            services: dict[str, Any] = {}
            if s["powered"]:
                try:
                    services = self.node_request(n.name, {"op": "status"}, timeout=5)
                except SandboxError:
                    services = {}
            cn = cluster.node(n.name) if cluster else None
            nodes.append(NodeStatus(name=n.name, address=n.address, nodeid=n.nodeid, powered=s["powered"],
                                    cut=s["cut"], init_pid=s["init_pid"], corosync=services.get("corosync"),
                                    pacemaker=services.get("pacemaker"), agent=services.get("agent"),
                                    agent_restarts=services.get("agent_restarts"),
                                    agent_restart_in=services.get("agent_restart_in"),
                                    cluster_online=cn.online if cn else None,
                                    standby=cn.standby if cn else None, is_dc=cn.is_dc if cn else None,
                                    age_recipient=self.age_recipient(n.name)))
        return SandboxStatus(
            running=True, state_dir=str(self.layout.root), cluster_dir=spec.cluster_dir,
            quorate=cluster.quorate if cluster else None, dc=cluster.dc if cluster else None,
            fencing_network=spec.fencing_network, power_switch=self.power_switch(spec), nodes=nodes,
            resources=[{"id": r.id, "agent": r.agent, "role": r.role, "nodes": r.nodes}
                       for r in (cluster.resources if cluster else [])],
            forge=self._forge_status(spec, sup_forge))

    def age_recipient(self, node: str) -> str | None:
        from controller.sandbox.supervisor import AGE_RECIPIENT

        path = self.layout.node_dir(node) / "etc-ha-gitops" / AGE_RECIPIENT
        try:
            return path.read_text().strip() or None
        except OSError:
            return None

    def _forge_status(self, spec: SandboxSpec, sup: dict[str, Any] | None) -> ForgeStatus | None:
        from controller.sandbox.forge import ForgeLayout

        forge = spec.forge
        if forge is None:
            return None
        lay = ForgeLayout(self.layout.root)
        running = bool(sup and sup.get("running"))
        daemons: dict[str, Any] = {}
        if running:
            with contextlib.suppress(SandboxError):
                daemons = self.forge_request("status", timeout=5)
        return ForgeStatus(address=forge.address, ssh_url=forge.ssh_url, https_url=forge.https_url,
                           ca_file=str(lay.ca_cert), repo=forge.repo, work=str(lay.work), seed=forge.seed,
                           running=running, init_pid=sup.get("init_pid") if sup else None,
                           ssh=daemons.get("ssh"), https=daemons.get("https"), hooks_log=str(lay.hooks_log))

    def power_switch(self, spec: SandboxSpec | None = None) -> str:
        spec = spec or self.spec()
        if spec.fencing_network == "oob":
            return str(self.layout.control_socket)
        return f"{spec.power_switch}:{POWER_SWITCH_PORT}"

    def addresses(self, node: str) -> list[str]:
        """The IPv4 addresses NODE's interfaces hold, read from outside (so also when it is off)."""
        return self.net.addresses(self.spec().node(node).index)

    # ------------------------------------------------------------ agents on a running sandbox
    def agents_start(self, agents: SandboxAgents) -> list[str]:
        """Install and start an agent on every powered node of a running sandbox, exactly as `up --agents`
        does (same agent.toml, same systemd-like supervision); nodes powered on later start theirs too.
        Returns the nodes whose agent was started."""
        from controller.sandbox.supervisor import write_agent_config

        spec = self.spec()
        if not self.supervisor_alive():
            raise SandboxError(f"no sandbox running in {self.layout.root} (`ha-gitops sandbox up` first)")
        if spec.agents is not None:
            raise SandboxError("agents are already running (`ha-gitops sandbox agents stop` first)")
        if agents.forge:
            if spec.forge is None:
                raise SandboxError(f"the sandbox in {self.layout.root} has no forge to follow "
                                   "(`sandbox up --forge`)")
            agents = agents.model_copy(update={"repo_url": spec.forge.url(agents.remote)})
        else:
            _check_repo(agents)
        spec = spec.model_copy(update={"agents": agents})
        _check_agent_config(spec, self.layout)
        self.layout.spec.write_text(spec.model_dump_json(indent=1))
        started = []
        for node in spec.nodes:
            unit = self._set_node_agent(node, write_agent_config(self.layout, spec, node))
            if unit is not None:
                self.node_request(node.name, {"op": "set-agent", **unit})
                started.append(node.name)
        return started

    def agents_stop(self) -> list[str]:
        """Stop and remove every node's agent (a clean stop: no restart); the cluster keeps running."""
        from controller.sandbox.supervisor import write_agent_config

        spec = self.spec().model_copy(update={"agents": None})
        self.layout.spec.write_text(spec.model_dump_json(indent=1))
        stopped = []
        for node in spec.nodes:
            write_agent_config(self.layout, spec, node)
            if self._set_node_agent(node, {}) is not None:
                self.node_request(node.name, {"op": "set-agent", "argv": None}, timeout=60)
                stopped.append(node.name)
        return stopped

    def _set_node_agent(self, node: NodeSpec, unit: dict[str, Any]) -> dict[str, Any] | None:
        """Write the node's agent into its node.json (read by its init at every boot); the running init's
        request, or None when the node is powered off (it reads node.json when it comes back)."""
        path = self.layout.node_dir(node.name) / "node.json"
        node_json = {k: v for k, v in json.loads(path.read_text()).items()
                     if k not in ("agent_argv", "agent_restart")}
        path.write_text(json.dumps({**node_json, **unit}))
        try:
            self.init_pid(node.name)
        except SandboxError:
            return None
        return {"argv": unit.get("agent_argv"), "restart": unit.get("agent_restart")}

    # ------------------------------------------------------------ failure injection
    def kill(self, node: str, service: str) -> dict[str, Any]:
        return self.node_request(node, {"op": "kill", "service": service})

    def stop_services(self, node: str, timeout: float = 120) -> dict[str, Any]:
        return self.node_request(node, {"op": "stop", "timeout": timeout}, timeout=timeout + 10)

    def start_services(self, node: str) -> dict[str, Any]:
        return self.node_request(node, {"op": "start"})

    def poweroff(self, node: str) -> dict[str, Any]:
        return self.request("poweroff", node)

    def start(self, node: str) -> dict[str, Any]:
        """Power a node on; if it is on but its cluster services are down, start them."""
        resp = self.request("start", node)
        if resp.get("already"):
            self.start_services(node)
        return resp

    def cut(self, node: str) -> None:
        self.net.cut(self.spec().node(node).index)

    def heal(self, node: str) -> None:
        self.net.heal(self.spec().node(node).index)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this sandbox still exists on the host: the tests assert this is empty after down."""
        procs = []
        state = self._state()
        recorded = [n.get("init_pid") for n in state.get("nodes", {}).values()]
        recorded.append((state.get("forge") or {}).get("init_pid"))
        for pid in [*recorded, state.get("supervisor_pid")]:
            if pid and _pid_alive(int(pid)):
                procs.append(str(pid))
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(self.layout.root) in line.split()[4] or f"hgs-{self.layout.tag}-" in line.split()[4]]
        return {"processes": procs, "netns": self.net.namespaces(), "mounts": mounts}


def _check_agent_config(spec: SandboxSpec, layout: Layout) -> None:
    """The agent.toml every node gets loads as the agent would load it (the --agent-config fragment
    merged in): an error names the fragment's file before any node starts."""
    from controller.errors import InputError
    from controller.sandbox.supervisor import agent_toml
    from controller.settings import load_settings

    if spec.agents is None or not spec.agents.agent_config.strip():
        return
    with tempfile.TemporaryDirectory(prefix="ha-gitops-agent-config-") as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_text(agent_toml(spec, spec.nodes[0], layout))
        try:
            load_settings(path)
        except InputError as exc:
            raise InputError(f"merged into the sandbox agents' settings: {exc.message}",
                             file=spec.agents.agent_config_source, element=exc.element) from exc


def _check_repo(agents: SandboxAgents) -> None:
    for private in ("/tmp/", "/run/", "/dev/shm/"):
        if agents.repo_url.removeprefix("file://").startswith(private):
            raise SandboxError(f"repository {agents.repo_url} is under {private}, which is private "
                               "to each node: put it where the nodes see it (e.g. /var/tmp)")


def _seed_url(repo: str) -> str:
    """The forge's seed as git clones it: a local path made absolute (the supervisor runs elsewhere)."""
    local = Path(repo.removeprefix("file://"))
    return str(local.resolve()) if repo.startswith("file://") or local.exists() else repo


def _answer(line: str) -> dict[str, Any]:
    """One JSON-object reply of the supervisor or a node's init; anything else is a failed answer."""
    try:
        resp = json.loads(line or '{"ok": false, "error": "no answer"}')
    except ValueError:
        resp = None
    return resp if isinstance(resp, dict) else {"ok": False, "error": f"not a JSON object: {line[:200]!r}"}


def _pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    # A zombie is dead: it only waits for its parent (maybe the host's PID 1) to reap it.
    return "\nState:\tZ" not in status


def _is_ours(pid: int) -> bool:
    """Only kill a recorded PID if it is still a sandbox process (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"controller.sandbox" in cmdline


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)

