"""The sandbox's hypervisor: a daemon on the host that owns the node processes and the power switch.

It builds the network, starts one node (namespaces + our init) per spec entry, and answers JSON-line
requests on a unix socket from the CLI (power off/on, status, shutdown). Fence requests from the plugin
inside the nodes come, by default, over the sandbox network: a TCP listener whose socket lives in the
bridge's namespace, at the power switch's address on the bridge (a cut node cannot reach it). With
`--fencing-network oob` they use the unix socket, which works across network namespaces and cuts.
It is the parent of every node process, so it reaps them at once and kills only what it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from controller.cib.marker import SANDBOX_SET_ID
from controller.sandbox import jsonline
from controller.sandbox.layout import Layout
from controller.sandbox.network import NETNS_DIR, SandboxNetwork
from controller.sandbox.topology import POWER_SWITCH_PORT, NodeSpec, SandboxAgents, SandboxSpec

HACLUSTER_DIRS = {  # per-node dirs Pacemaker writes as hacluster:haclient, with the package's modes
    "var-lib-pacemaker": 0o750, "var-lib-pacemaker/cib": 0o750, "var-lib-pacemaker/pengine": 0o750,
    "var-lib-pacemaker/blackbox": 0o750, "var-lib-pacemaker/cores": 0o750, "var-log-pacemaker": 0o770,
    "var-log-pacemaker/bundles": 0o770,
}
ROOT_DIRS = ("etc-corosync", "etc-corosync/uidgid.d", "var-lib-corosync", "var-lib-heartbeat",
             "var-lib-heartbeat/lrm", "var-lib-heartbeat/cores", "var-log-corosync", "etc-ha-gitops",
             "var-lib-ha-gitops", "logs")


# Where the agent's systemd unit is: in a checkout, and where deploy/install.sh puts it.
AGENT_UNITS = (Path(__file__).resolve().parents[2] / "deploy" / "ha-gitops-agent.service",
               Path("/etc/systemd/system/ha-gitops-agent.service"))
# What deploy/ha-gitops-agent.service says, for an install without the unit file (a test keeps them equal).
AGENT_RESTART_DEFAULT = {"restart": "on-failure", "restart_sec": 5.0}
_TIMESPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|sec|s|min|m|h)?\s*")
_SPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_timespan(text: str) -> float:
    """systemd's time span (systemd.time(7)), the forms a unit uses: "5", "500ms", "1min 30s"."""
    text = text.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        m = _TIMESPAN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"not a systemd time span: {text!r}")
        total += float(m[1]) * _SPAN_UNITS[m[2]]
        pos = m.end()
    return total


def unit_restart(unit_text: str) -> dict[str, Any]:
    """Restart= and RestartSec= of a unit's [Service] section (systemd's defaults when absent: no, 100ms)."""
    out: dict[str, Any] = {"restart": "no", "restart_sec": 0.1}
    section = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith(("#", ";")):
            key, value = (x.strip() for x in line.split("=", 1))
            if key == "Restart":
                out["restart"] = value
            elif key == "RestartSec":
                out["restart_sec"] = parse_timespan(value)
    return out


def agent_restart_policy() -> dict[str, Any]:
    """The sandbox restarts a node's agent as the agent's systemd unit would on a real node."""
    for unit in AGENT_UNITS:
        with contextlib.suppress(OSError):
            return unit_restart(unit.read_text())
    return dict(AGENT_RESTART_DEFAULT)


def seed_cib(spec: SandboxSpec) -> str:
    """The CIB a freshly set up cluster has (as `crm cluster init` leaves it): nodes, no resources.

    dc-deadtime is short so the first DC election does not wait the 20 s default. It sits in a property
    set of the sandbox's own (controller/cib/marker.py SANDBOX_RULE): no plan, diff or export shows it and
    no apply removes it.
    """
    nodes = "".join(f'<node id="{n.nodeid}" uname="{n.name}"/>' for n in spec.nodes)
    return (
        '<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" '
        f'admin_epoch="0"><configuration><crm_config><cluster_property_set id="{SANDBOX_SET_ID}">'
        f'<nvpair id="{SANDBOX_SET_ID}-dc-deadtime" name="dc-deadtime" value="2s"/></cluster_property_set>'
        '<cluster_property_set id="cib-bootstrap-options">'
        f'<nvpair id="cib-bootstrap-options-cluster-name" name="cluster-name" value="{spec.cluster_name}"/>'
        f"</cluster_property_set></crm_config><nodes>{nodes}</nodes><resources/><constraints/>"
        "</configuration><status/></cib>\n"
    )


def prepare_node_dir(layout: Layout, spec: SandboxSpec, node: NodeSpec) -> None:
    """A node's disks: fresh on `up`, kept across power cycles (the CIB survives a reboot)."""
    import grp
    import pwd

    d = layout.node_dir(node.name)
    uid, gid = pwd.getpwnam("hacluster").pw_uid, grp.getgrnam("haclient").gr_gid
    for sub in ROOT_DIRS:
        (d / sub).mkdir(parents=True, exist_ok=True)
    for sub, mode in HACLUSTER_DIRS.items():
        p = d / sub
        p.mkdir(parents=True, exist_ok=True)
        os.chown(p, uid, gid)
        p.chmod(mode)
    (d / "etc-corosync" / "corosync.conf").write_text(spec.corosync_conf)
    cib = d / "var-lib-pacemaker" / "cib" / "cib.xml"
    cib.write_text(seed_cib(spec))
    os.chown(cib, uid, gid)
    cib.chmod(0o600)
    node_json: dict[str, Any] = {"name": node.name, "address": node.address}
    node_json.update(write_agent_config(layout, spec, node))
    (d / "node.json").write_text(json.dumps(node_json))


def write_agent_config(layout: Layout, spec: SandboxSpec, node: NodeSpec) -> dict[str, Any]:
    """The node's agent.toml for spec.agents, and what its init needs to run the agent (node.json keys:
    agent_argv, agent_restart); no agents: none, and any agent.toml left from before is removed."""
    etc = layout.node_dir(node.name) / "etc-ha-gitops"
    toml = etc / "agent.toml"
    if spec.forge is not None:
        from controller.sandbox.forge import install_node_credentials

        install_node_credentials(layout.root, node, etc)
    if spec.agents is None:
        toml.unlink(missing_ok=True)
        return {}
    secret = toml.with_name("webhook.secret")
    if spec.forge is not None:
        pass  # the forge's own secret, put there by install_node_credentials
    elif spec.agents.webhook_secret is not None:
        secret.touch(mode=0o600)
        secret.chmod(0o600)
        secret.write_text(spec.agents.webhook_secret + "\n")
    else:
        secret.unlink(missing_ok=True)
    toml.write_text(agent_toml(spec, node, layout))
    if spec.agents.age_identity_dir is not None:  # identities made beforehand (preview encrypts to them)
        given = Path(spec.agents.age_identity_dir) / f"{node.name}.key"
        if given.is_file():
            shutil.copyfile(given, etc / AGE_IDENTITY)
            (etc / AGE_IDENTITY).chmod(0o600)
    write_age_identity(etc)
    return {"agent_argv": [sys.executable, "-m", "controller.cli", "agent", "--config",
                           "/etc/ha-gitops/agent.toml"],
            "agent_restart": agent_restart_policy()}


AGE_IDENTITY = "age.key"  # the agents' default age_identity, /etc/ha-gitops/age.key inside the node
AGE_RECIPIENT = "age.recipient"  # its public half, for `sandbox status` (and cluster.toml's recipients)


def write_age_identity(etc: Path) -> str:
    """The node's age identity (made when there is none); its recipient."""
    from controller.secrets import age

    recipient = age.keygen(etc / AGE_IDENTITY)
    (etc / AGE_RECIPIENT).write_text(recipient + "\n")
    return recipient


def _hooks_from_forge(a: SandboxAgents) -> bool:
    """The forge sends the push webhooks: its secret and listener win over the agents' own options."""
    return a.forge and a.webhooks


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def agent_toml(spec: SandboxSpec, node: NodeSpec, layout: Layout) -> str:
    """The agent configuration of one sandbox node: the user's repo, plus what the sandbox substitutes."""
    from controller.desired.substitute import SANDBOX_SUBSTITUTIONS

    a = spec.agents
    assert a is not None
    if a.forge:
        from controller.sandbox.forge import agent_transport_toml

        if spec.forge is None:
            raise ValueError("agents follow the forge, but the sandbox has none (`sandbox up --forge`)")
        source = agent_transport_toml(spec.forge, a.remote, a.webhooks)
    else:
        source = [f"repo_url = {_toml_str(a.repo_url)}"]
    retry = [f"{k} = {v}" for k, v in (("retry_initial", a.retry_initial), ("retry_max", a.retry_max))
             if v is not None]
    lines = [
        "# Written by `ha-gitops sandbox up --agents`: the agent of sandbox node " + node.name,
        *source,
        *retry,
        f"branch = {_toml_str(a.branch)}",
        f"path = {_toml_str(a.path)}",
        f"node_name = {_toml_str(node.name)}",
        f"poll_interval = {a.poll_interval}",
        f"drift_debounce = {a.drift_debounce}",
        f"watch_debounce = {a.watch_debounce}",
        f"drift_mode = {_toml_str(a.drift_mode)}",
        f"warm_crm = {_toml_str(a.warm_crm)}",
        f"audit_url = {_toml_str(a.audit_url or 'sqlite:////var/lib/ha-gitops/audit.db')}",
        'cache_dir = "/var/lib/ha-gitops/repo"',
        *(["watch_source = false"] if not a.watch_source else []),
        *([f"http_listen = {_toml_str(a.http_listen)}"]
          if a.http_listen is not None and not _hooks_from_forge(a) else []),
        *(['webhook_secret_file = "/etc/ha-gitops/webhook.secret"']
          if a.webhook_secret is not None and not _hooks_from_forge(a) else []),
        "# Restarting corosync/pacemaker is the node's own init, not systemd (there is none in a node).",
        "service_command = " + json.dumps([sys.executable, "-m", "controller.sandbox.service_ctl",
                                           str(layout.node_dir(node.name))]),
    ]
    for sub in SANDBOX_SUBSTITUTIONS:
        lines.append("")
        lines.append("[[substitute]]")
        for key, value in sub.model_dump(exclude_none=True).items():
            lines.append(f"{key} = {json.dumps(value)}")
    from controller.sandbox.agent_config import merge

    return merge("\n".join(lines) + "\n", a.agent_config, source=a.agent_config_source)


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.spec = SandboxSpec.model_validate_json(layout.spec.read_text())
        self.net = SandboxNetwork(layout.tag)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.init_pids: dict[str, int] = {}
        self.forge_proc: subprocess.Popen[bytes] | None = None
        self.forge_pid: int | None = None
        self.lock = threading.RLock()
        self.stopping = threading.Event()

    # ------------------------------------------------------------ nodes
    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "nodes": {n.name: {"init_pid": self.init_pids.get(n.name), "netns": self.net.node_ns(n.index),
                               "powered": n.name in self.procs and self.procs[n.name].poll() is None}
                      for n in self.spec.nodes},
            "bridge_netns": self.net.bridge_ns,
        }
        if self.spec.forge is not None:
            state["forge"] = {"init_pid": self.forge_pid, "netns": self.net.forge_ns}
        tmp = self.layout.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.layout.state)

    def start_node(self, name: str) -> dict[str, Any]:
        node = self.spec.node(name)
        with self.lock:
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                return {"ok": True, "already": True}
            if not self.net.exists(self.net.node_ns(node.index)):
                self.net.create_node(node.index)
            self.net.power_on(node.index, node.address, self.spec.prefixlen)
            log = open(self.layout.node_dir(name) / "logs" / "init.out", "ab")  # noqa: SIM115
            argv = ["nsenter", f"--net={NETNS_DIR / self.net.node_ns(node.index)}", "--",
                    "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--mount",
                    "--uts", "--ipc", "--", sys.executable, "-m", "controller.sandbox.node_init",
                    str(self.layout.node_dir(name))]
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
            log.close()
            self.procs[name] = proc
            init_pid = _wait_child_pid(proc.pid, 5.0)
            if init_pid is None:
                return {"ok": False, "error": f"node {name} did not start; see {log.name}"}
            self.init_pids[name] = init_pid
            self._write_state()
            return {"ok": True, "init_pid": init_pid}

    def start_forge(self) -> dict[str, Any]:
        """The forge's machine: its init in the forge's network namespace, then sshd and Apache."""
        from controller.sandbox.forge import ForgeLayout

        assert self.spec.forge is not None
        lay = ForgeLayout(self.layout.root)
        with self.lock:
            log = open(lay.logs / "init.out", "ab")  # noqa: SIM115
            argv = ["nsenter", f"--net={NETNS_DIR / self.net.forge_ns}", "--",
                    "unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--mount",
                    "--uts", "--ipc", "--", sys.executable, "-m", "controller.sandbox.forge_init",
                    str(lay.root)]
            self.forge_proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                               close_fds=True)
            log.close()
            self.forge_pid = _wait_child_pid(self.forge_proc.pid, 5.0)
            self._write_state()
            if self.forge_pid is None:
                return {"ok": False, "error": f"the forge did not start; see {lay.logs / 'init.out'}"}
        deadline = time.monotonic() + 10
        while not lay.control_socket.exists():
            if time.monotonic() > deadline or self.forge_proc.poll() is not None:
                return {"ok": False,
                        "error": f"the forge's init did not come up; see {lay.logs / 'init.out'}"}
            time.sleep(0.02)
        return forge_request(lay.control_socket, {"op": "start"}, timeout=30)

    def stop_forge(self) -> None:
        """Stop the daemons cleanly, then the forge's init (and with it anything left in its namespace)."""
        from controller.sandbox.forge import ForgeLayout

        p = self.forge_proc
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            forge_request(ForgeLayout(self.layout.root).control_socket, {"op": "stop"}, timeout=20)
        if self.forge_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.forge_pid, signal.SIGKILL)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        self.forge_pid = None
        self._write_state()

    def poweroff(self, name: str) -> dict[str, Any]:
        """Pull the plug: SIGKILL the node's PID 1, which takes every process of the node with it."""
        self.spec.node(name)
        with self.lock:
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                return {"ok": True, "already": True}
            pid = self.init_pids.get(name)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                p.wait(10)  # unshare returns once its child, the namespace's init, has been reaped
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            # Before anybody hears "off" (the fencer above all): the node's addresses, VIPs included, go.
            self.net.power_off(self.spec.node(name).index)
            self.init_pids.pop(name, None)
            self._write_state()
            return {"ok": True}

    def reboot(self, name: str) -> dict[str, Any]:
        off = self.poweroff(name)
        if not off.get("ok"):
            return off
        # Answer the fencer once the node is really off; bring it back in the background, as a BMC would.
        threading.Thread(target=self._delayed_start, args=(name,), daemon=True).start()
        return {"ok": True}

    def _delayed_start(self, name: str) -> None:
        time.sleep(1.0)
        if not self.stopping.is_set():
            self.start_node(name)

    def status(self) -> dict[str, Any]:
        with self.lock:
            nodes = {}
            for n in self.spec.nodes:
                p = self.procs.get(n.name)
                nodes[n.name] = {"powered": p is not None and p.poll() is None,
                                 "init_pid": self.init_pids.get(n.name),
                                 "netns": self.net.node_ns(n.index), "cut": self.net.is_cut(n.index)}
            forge = None
            if self.spec.forge is not None:
                forge = {"running": self.forge_proc is not None and self.forge_proc.poll() is None,
                         "init_pid": self.forge_pid, "netns": self.net.forge_ns}
            return {"ok": True, "supervisor_pid": os.getpid(), "nodes": nodes, "forge": forge}

    def shutdown(self) -> dict[str, Any]:
        self.stopping.set()
        with self.lock:
            for name in list(self.procs):
                self.poweroff(name)
            self.stop_forge()
            self.net.destroy()
            if self.layout.control_socket.exists():
                self.layout.control_socket.unlink()
        return {"ok": True}

    # ------------------------------------------------------------ serving
    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op, node = req.get("op"), req.get("node")
        if op == "ping":
            return {"ok": True}
        if op == "status":
            return self.status()
        if op in ("start", "poweroff", "reboot"):
            names = [n.name for n in self.spec.nodes]
            if node not in names:
                return {"ok": False, "error": f"no node {node!r} (nodes: {', '.join(names)})"}
            print(f"{time.strftime('%H:%M:%S')} {op} {node} (from {req.get('origin', 'cli')})", flush=True)
            return {"start": self.start_node, "poweroff": self.poweroff, "reboot": self.reboot}[op](node)
        if op == "shutdown":
            return self.shutdown()
        return {"ok": False, "error": f"unknown op {op!r}"}

    # Only what a fence device can do: no status of the sandbox, no shutdown, from inside a node.
    FENCE_OPS = frozenset({"ping", "start", "poweroff", "reboot"})

    def serve_switch(self, srv: socket.socket) -> None:
        """The power switch on the sandbox network: one JSON line per TCP connection, as on the unix
        socket."""
        srv.listen(16)
        srv.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, peer = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve_one, args=(conn, self.FENCE_OPS, peer[0]),
                             daemon=True).start()
        srv.close()

    def serve(self) -> None:
        path = self.layout.control_socket
        if path.exists():
            path.unlink()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        path.chmod(0o600)
        srv.listen(16)
        srv.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()
        srv.close()

    def _serve_one(self, conn: socket.socket, allowed: frozenset[str] | None = None,
                   peer: str | None = None) -> None:
        conn.settimeout(30)
        with conn, conn.makefile("rw") as f:
            try:
                req = json.loads(f.readline() or "{}")
                if not isinstance(req, dict):
                    raise ValueError("a request is a JSON object")
                if allowed is not None and req.get("op") not in allowed:
                    resp = {"ok": False, "error": f"op {req.get('op')!r} is not a power switch's"}
                else:
                    if peer is not None:
                        req["origin"] = f"{req.get('origin', '?')} via {peer}"
                    resp = self.handle(req)
            except Exception as exc:  # one bad request must not take the sandbox down
                resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            f.write(json.dumps(resp) + "\n")
            f.flush()


def forge_request(sock: Path, req: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """One JSON-line request to the forge's init."""
    return jsonline.ask(sock, req, timeout=timeout, who="the forge's init")


CLONE_NEWNET = 0x40000000


def socket_in_netns(netns: Path) -> socket.socket:
    """A TCP socket in another network namespace: this thread enters it (setns is per thread), creates the
    socket (which keeps its namespace for life) and comes back."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {netns}: {os.strerror(err)}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:  # a thread left in the bridge's namespace: stop here
                sys.stderr.write(f"setns back to the host's network namespace: errno {ctypes.get_errno()}\n")
                os._exit(70)
    finally:
        os.close(own)
        os.close(target)


def _wait_child_pid(parent: int, timeout: float) -> int | None:
    """The host PID of unshare's forked child, which is PID 1 of the node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for task in Path(f"/proc/{parent}/task").iterdir():
                kids = (task / "children").read_text().split()
                if kids:
                    return int(kids[0])
        except OSError:
            return None
        time.sleep(0.01)
    return None


def main() -> None:
    layout = Layout(sys.argv[1])
    sup = Supervisor(layout)
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    sup.net.create_bridge()
    shutil.rmtree(layout.nodes_dir, ignore_errors=True)
    if sup.spec.forge is not None:
        from controller.sandbox.forge import prepare

        sup.net.create_forge(sup.spec.forge.address, sup.spec.prefixlen)
        prepare(layout.root, sup.spec)  # before the nodes: their agents get the forge's credentials
    for node in sup.spec.nodes:
        prepare_node_dir(layout, sup.spec, node)
    sup._write_state()
    if sup.spec.forge is not None:
        started = sup.start_forge()
        print(f"{time.strftime('%H:%M:%S')} forge at {sup.spec.forge.address}: "
              f"{'up' if started.get('ok') else started.get('error')}", flush=True)
    if sup.spec.fencing_network == "cluster":
        sup.net.add_switch_address(sup.spec.power_switch, sup.spec.prefixlen)
        srv = socket_in_netns(NETNS_DIR / sup.net.bridge_ns)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((sup.spec.power_switch, POWER_SWITCH_PORT))
        threading.Thread(target=sup.serve_switch, args=(srv,), daemon=True).start()
    server = threading.Thread(target=sup.serve, daemon=True)
    server.start()
    for node in sup.spec.nodes:
        sup.start_node(node.name)
    print(f"{time.strftime('%H:%M:%S')} sandbox up: {', '.join(n.name for n in sup.spec.nodes)}", flush=True)
    while not sup.stopping.is_set():
        time.sleep(0.5)
    sup.shutdown()
    print(f"{time.strftime('%H:%M:%S')} sandbox down", flush=True)


if __name__ == "__main__":
    main()
