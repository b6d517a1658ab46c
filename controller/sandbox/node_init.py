"""PID 1 of one sandbox node: private mounts, hostname, then corosync and pacemaker as its children.

Runs inside `unshare --pid --fork --mount-proc --mount --uts --ipc` joined to the node's network
namespace. It serves a small control socket (JSON lines) on a path the host sees, so the sandbox can
start, stop or kill the node's cluster services without touching any process it did not start.
Stdlib only: it must start fast and never depend on the cluster tools it supervises.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from controller.env_names import FAULT_FILE_ENV, agent_environment
from controller.sandbox import jsonline

# Host paths hidden behind per-node directories (host path -> name of the per-node directory).
BIND_DIRS: dict[str, str] = {
    "/etc/corosync": "etc-corosync",
    "/var/lib/corosync": "var-lib-corosync",
    "/var/lib/pacemaker": "var-lib-pacemaker",
    "/var/lib/heartbeat": "var-lib-heartbeat",
    "/var/log/pacemaker": "var-log-pacemaker",
    "/var/log/corosync": "var-log-corosync",
    "/etc/ha-gitops": "etc-ha-gitops",
    "/var/lib/ha-gitops": "var-lib-ha-gitops",
}
PRIVATE_TMPFS = ("/run", "/dev/shm", "/tmp")
# The sandbox's power switch stands in for the SSH fence plugin (nodes are namespaces, not hosts).
FENCE_PLUGIN = "/usr/lib/stonith/plugins/external/ssh"


# systemd.service(5): an exit with 0 or by one of these signals is clean; Restart= decides on the rest.
CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def restart_wanted(policy: str, returncode: int) -> bool:
    """Would systemd restart a unit whose main process ended with this status (Popen's returncode)?"""
    by_signal = returncode < 0
    clean = returncode == 0 or (by_signal and -returncode in CLEAN_SIGNALS)
    if policy == "always":
        return True
    if policy == "on-success":
        return clean
    if policy == "on-failure":
        return not clean
    if policy in ("on-abnormal", "on-abort"):  # no timeouts or watchdog here: both are "unclean signal"
        return by_signal and not clean
    return False  # "no"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"code=killed, status={-returncode}/{signal.Signals(-returncode).name.removeprefix('SIG')}"
    return f"code=exited, status={returncode}"


# PID 1 must reap orphans, but must not steal the exit status of children it waits for itself.
_children_lock = threading.Lock()
_managed: dict[int, subprocess.Popen[bytes]] = {}


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    with _children_lock:
        p = subprocess.Popen(argv, **kwargs)
        _managed[p.pid] = p
    return p


def _run(argv: list[str], timeout: float = 10) -> int:
    p = _popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, errout = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return -9
    finally:
        with _children_lock:
            _managed.pop(p.pid, None)
    if p.returncode and argv[0] == "mount":
        raise RuntimeError(f"{' '.join(argv)}: {errout.decode(errors='replace').strip()}")
    return p.returncode


def _mount(*args: str) -> None:
    _run(["mount", *args])


def _hidden_by_tmpfs(paths: list[Path]) -> list[Path]:
    """The paths a private tmpfs would hide (a checkout or a venv under /tmp), outermost only."""
    hidden = sorted({p for p in paths if any(p.is_relative_to(t) and p != Path(t) for t in PRIVATE_TMPFS)})
    return [p for p in hidden if not any(p != q and p.is_relative_to(q) for q in hidden)]


def setup_node(node_dir: Path, hostname: str) -> None:
    socket.sethostname(hostname)
    _mount("--make-rprivate", "/")
    # What the node runs from must stay visible through its private /tmp: this Python (its venv), the
    # checkout it was started from, the sandbox's state. Parked under the node's own directory while the
    # tmpfs goes on, then bound back at the same path.
    keep = _hidden_by_tmpfs([Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2],
                             node_dir.resolve().parents[1]])
    parked: list[tuple[Path, Path]] = []
    for i, kept in enumerate(keep):
        hold = node_dir / "keep" / str(i)
        hold.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(kept), str(hold))
        parked.append((kept, hold))
    for path in PRIVATE_TMPFS:
        _mount("-t", "tmpfs", "-o", "mode=1777" if path != "/run" else "mode=755", "tmpfs", path)
    for kept, hold in parked:
        kept.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(hold), str(kept))
    for host_path, name in BIND_DIRS.items():
        if "ha-gitops" in host_path:
            # Our own product's directories may not exist on a machine that only runs the sandbox: an
            # empty mount point is all the host gets.
            Path(host_path).mkdir(parents=True, exist_ok=True)
        src = node_dir / name
        if src.is_dir() and Path(host_path).is_dir():
            _mount("--bind", str(src), host_path)
    hosts = node_dir.parent.parent / "hosts"
    if hosts.exists():
        _mount("--bind", "-o", "ro", str(hosts), "/etc/hosts")
    fence = node_dir.parent.parent / "fence-agent"
    if fence.exists() and Path(FENCE_PLUGIN).exists():
        _mount("--bind", "-o", "ro", str(fence), FENCE_PLUGIN)
    for d in ("/run/corosync", "/run/crm", "/run/pacemaker", "/run/resource-agents", "/run/lock"):
        Path(d).mkdir(parents=True, exist_ok=True)
    _run(["ip", "link", "set", "lo", "up"])


class Services:
    """corosync then pacemakerd, as children of this init; all output to log files."""

    def __init__(self, log_dir: Path, agent_argv: list[str] | None = None,
                 agent_restart: dict[str, Any] | None = None) -> None:
        self.log_dir = log_dir
        self.agent_argv = agent_argv
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        # The agent is supervised as its systemd unit is on a real node (Restart=, RestartSec=).
        restart = agent_restart or {}
        self.agent_policy = str(restart.get("restart", "no"))
        self.agent_restart_sec = float(restart.get("restart_sec", 0.1))
        self.agent_wanted = False  # started and not stopped on purpose: what systemd calls active
        self.agent_restart_at: float | None = None
        self.agent_restarts = 0  # systemd's NRestarts: automatic restarts only

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.out", "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = _popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                  close_fds=True)
        log.close()

    @staticmethod
    def _agent_env() -> dict[str, str]:
        # The node's agent.toml is its whole configuration: HA_GITOPS_<KEY> of whoever started the sandbox
        # would win over it (HA_GITOPS_CACHE_DIR once gave every node one clone, HA_GITOPS_AGE_IDENTITY an
        # operator's key). Sandbox agents can be paused at named points (controller/faults.py) for incident
        # rehearsals. MALLOC_ARENA_MAX as in deploy/ha-gitops-agent.service.
        return {**agent_environment(os.environ), FAULT_FILE_ENV: "/etc/ha-gitops/faults.json",
                "MALLOC_ARENA_MAX": "2"}

    def running(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def start(self, names: tuple[str, ...] = ("corosync", "pacemaker")) -> dict[str, Any]:
        with self.lock:
            env = dict(os.environ)
            if not self.running("corosync"):
                self._spawn("corosync", ["corosync", "-f"], env)
                # pacemakerd refuses to start before corosync's IPC is up.
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    if _run(["corosync-cfgtool", "-s"], 5) == 0 or not self.running("corosync"):
                        break
                    time.sleep(0.1)
                if not self.running("corosync"):
                    return {"ok": False, "error": f"corosync exited; see {self.log_dir}/corosync.out"}
            if "pacemaker" in names and not self.running("pacemaker"):
                env.update(PCMK_logfile="/var/log/pacemaker/pacemaker.log", PCMK_logfacility="none",
                           PCMK_debug="no")
                self._spawn("pacemaker", ["pacemakerd"], env)
            self._start_agent_locked()
            return {"ok": True}

    def _start_agent_locked(self) -> None:
        if self.agent_argv and not self.running("agent"):
            self._spawn("agent", self.agent_argv, self._agent_env())
        self.agent_wanted = self.agent_argv is not None
        self.agent_restart_at = None  # a start by hand replaces a scheduled one

    def _unit_log(self, text: str) -> None:
        """What journalctl -u ha-gitops-agent would show, in the agent's own log file."""
        with contextlib.suppress(OSError), open(self.log_dir / "agent.out", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} sandbox init: ha-gitops-agent.service: {text}\n")

    def supervise_agent(self) -> None:
        """systemd's part for the agent: when its process ends while wanted, restart it after RestartSec
        if Restart= says so. A stop on purpose (sandbox down, a node's services stopped) is not restarted,
        and a node powered off takes this init with it."""
        while True:
            time.sleep(0.1)
            with self.lock:
                p = self.procs.get("agent")
                if not self.agent_wanted or p is None:
                    continue
                rc = p.poll()
                if rc is None:
                    continue
                if self.agent_restart_at is None:
                    if not restart_wanted(self.agent_policy, rc):
                        self.agent_wanted = False
                        self._unit_log(f"main process exited, {describe_exit(rc)}; not restarted "
                                       f"(Restart={self.agent_policy})")
                        continue
                    self.agent_restart_at = time.monotonic() + self.agent_restart_sec
                    self._unit_log(f"main process exited, {describe_exit(rc)}; restart in "
                                   f"{self.agent_restart_sec:g}s (Restart={self.agent_policy})")
                elif time.monotonic() >= self.agent_restart_at:
                    self.agent_restart_at = None
                    self.agent_restarts += 1
                    self._unit_log(f"scheduled restart job, restart counter is at {self.agent_restarts}")
                    self._spawn("agent", self.agent_argv or [], self._agent_env())

    def stop(self, timeout: float = 60, names: tuple[str, ...] = ("pacemaker", "corosync")) -> dict[str, Any]:
        """Clean shutdown, the way systemctl stop pacemaker corosync would do it. The agent keeps
        running unless named: it is the one that restarts the cluster services in a rolling restart."""
        with self.lock:
            if "agent" in names:
                self.agent_wanted = False  # systemctl stop: not a failure, no restart
                self.agent_restart_at = None
            for name in [n for n in ("agent", "pacemaker", "corosync") if n in names]:
                p = self.procs.get(name)
                if p is None or p.poll() is not None:
                    continue
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill_tree(name)
            return {"ok": True}

    def _kill_tree(self, name: str) -> list[int]:
        """SIGKILL a service: pacemakerd's subdaemons are separate processes, find them by name."""
        if name == "agent":  # one process we started ourselves: kill it by its PID
            p = self.procs.get("agent")
            if p is None or p.poll() is not None:
                return []
            p.kill()
            p.wait(5)
            return [p.pid]
        names = {"corosync": ("corosync",), "pacemaker": ("pacemakerd", "pacemaker-")}[name]
        killed = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == 1:
                continue
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(names):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
                except ProcessLookupError:
                    pass
        p = self.procs.get(name)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        return killed

    def kill(self, name: str) -> dict[str, Any]:
        if name not in ("corosync", "pacemaker", "agent"):
            return {"ok": False, "error": f"unknown service {name!r} (corosync, pacemaker or agent)"}
        with self.lock:
            resp: dict[str, Any] = {"ok": True, "killed": self._kill_tree(name)}
        if name == "agent" and self.agent_argv:
            resp["agent_unit"] = {"restart": self.agent_policy, "restart_sec": self.agent_restart_sec}
        return resp

    def status(self) -> dict[str, Any]:
        # No lock: `start` holds it while corosync comes up, and status must answer meanwhile.
        at, agent = self.agent_restart_at, self.agent_argv is not None
        return {"ok": True, "corosync": self.running("corosync"), "pacemaker": self.running("pacemaker"),
                "agent": self.running("agent") if agent else None,
                "agent_restarts": self.agent_restarts if agent else None,
                "agent_restart_in": None if at is None else round(max(0.0, at - time.monotonic()), 2),
                "agent_unit": {"restart": self.agent_policy, "restart_sec": self.agent_restart_sec}
                if agent else None}

    def start_agent(self) -> dict[str, Any]:
        with self.lock:
            self._start_agent_locked()
            return {"ok": True}

    def set_agent(self, argv: list[str] | None, restart: dict[str, Any] | None) -> dict[str, Any]:
        """`sandbox agents start|stop` on a running node: install (and start) or stop and remove the agent,
        as `systemctl enable --now` / `disable --now` would."""
        if argv is None:
            self.stop(30, ("agent",))
            with self.lock:
                self.agent_argv = None
                self.agent_restarts = 0
            return {"ok": True}
        with self.lock:
            self.agent_argv = list(argv)
            self.agent_policy = str((restart or {}).get("restart", "no"))
            self.agent_restart_sec = float((restart or {}).get("restart_sec", 0.1))
            self._start_agent_locked()
        return {"ok": True}


def reap_forever() -> None:
    """As PID 1, reap orphans (resource agents double-fork) so no zombie piles up."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            time.sleep(0.5)
            continue
        if info is None:
            continue
        with _children_lock:
            owned = _managed.get(info.si_pid)
            if owned is None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(info.si_pid, 0)
                continue
        if owned.poll() is not None:  # a service that died: record its status through its Popen
            with _children_lock:
                _managed.pop(info.si_pid, None)
        else:
            time.sleep(0.05)  # a short-lived helper whose owner is about to wait for it


def serve(sock_path: Path, services: Services) -> None:
    jsonline.serve(sock_path, lambda req: _handle(req, services))


def _handle(req: dict[str, Any], services: Services) -> dict[str, Any]:
    op = req.get("op")
    if op == "start":
        resp = services.start(tuple(req.get("services", ("corosync", "pacemaker"))))
    elif op == "stop":
        resp = services.stop(float(req.get("timeout", 60)),
                             tuple(req.get("services", ("pacemaker", "corosync"))))
    elif op == "start-agent":
        resp = services.start_agent()
    elif op == "set-agent":
        resp = services.set_agent(req.get("argv"), req.get("restart"))
    elif op == "kill":
        resp = services.kill(str(req.get("service")))
    elif op == "status":
        resp = services.status()
    else:
        resp = {"ok": False, "error": f"unknown op {op!r}"}
    return resp


def main() -> None:
    node_dir = Path(sys.argv[1])
    spec = json.loads((node_dir / "node.json").read_text())
    setup_node(node_dir, spec["name"])
    services = Services(node_dir / "logs", spec.get("agent_argv"), spec.get("agent_restart"))
    threading.Thread(target=reap_forever, daemon=True).start()
    threading.Thread(target=services.supervise_agent, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: (services.stop(30, ("agent", "pacemaker", "corosync")),
                                              os._exit(0)))
    if spec.get("autostart", True):
        threading.Thread(target=services.start, daemon=True).start()
    serve(node_dir / "init.sock", services)


if __name__ == "__main__":
    main()
