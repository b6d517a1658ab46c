"""PID 1 of the sandbox's forge: private mounts, then sshd and Apache as its children.

Runs inside `unshare --pid --fork --mount-proc --mount --uts --ipc` joined to the forge's network
namespace, like a node's init. Its own /etc/passwd and /etc/group (the git user exists only here) and a
private /run (sshd's privilege separation directory) are bind mounts in its mount namespace. A control
socket (JSON lines) starts, stops and reports the two daemons, by the PIDs it started. Stdlib only.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from controller.sandbox import jsonline
from controller.sandbox.node_init import PRIVATE_TMPFS, _hidden_by_tmpfs, _mount, _popen, _run, reap_forever

SERVICES = ("ssh", "https")


def setup_forge(forge_dir: Path, cfg: dict[str, Any]) -> None:
    socket.sethostname("forge")
    _mount("--make-rprivate", "/")
    keep = _hidden_by_tmpfs([Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2],
                             forge_dir.resolve().parent])
    parked: list[tuple[Path, Path]] = []
    for i, kept in enumerate(keep):
        hold = forge_dir / "keep" / str(i)
        hold.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(kept), str(hold))
        parked.append((kept, hold))
    for path in PRIVATE_TMPFS:
        _mount("-t", "tmpfs", "-o", "mode=1777" if path != "/run" else "mode=755", "tmpfs", path)
    for kept, hold in parked:
        kept.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(hold), str(kept))
    _mount("--bind", cfg["passwd"], "/etc/passwd")
    _mount("--bind", cfg["group"], "/etc/group")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    _run(["ip", "link", "set", "lo", "up"])


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class Daemons:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.logs = Path(cfg["logs"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()

    def running(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def start(self, names: tuple[str, ...] = SERVICES, timeout: float = 15) -> dict[str, Any]:
        with self.lock:
            for name in names:
                if self.running(name):
                    continue
                log = open(self.logs / f"{name}.out", "ab")  # noqa: SIM115 - handed to the daemon
                # A session of its own: Apache's parent signals its whole process group on SIGTERM, which
                # must not reach this init.
                self.procs[name] = _popen(self.cfg["services"][name]["argv"], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, close_fds=True, start_new_session=True)
                log.close()
            # Answer once they accept connections: an agent that fetches right after gets an answer.
            deadline = time.monotonic() + timeout
            for name in names:
                port = int(self.cfg["services"][name]["port"])
                while not listening(self.cfg["address"], port):
                    if not self.running(name):
                        return {"ok": False, "error": f"forge {name} exited; see {self.logs}/{name}.out"}
                    if time.monotonic() > deadline:
                        return {"ok": False, "error": f"forge {name} not listening on port {port} after "
                                                      f"{timeout:g}s; see {self.logs}/{name}.out"}
                    time.sleep(0.05)
            return {"ok": True}

    def stop(self, names: tuple[str, ...] = SERVICES) -> dict[str, Any]:
        """SIGTERM to the daemon we started (Apache's parent takes its children along), then wait."""
        with self.lock:
            stopped = []
            for name in names:
                p = self.procs.get(name)
                if p is None or p.poll() is not None:
                    continue
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
                stopped.append(p.pid)
            return {"ok": True, "stopped": stopped}

    def status(self) -> dict[str, Any]:
        return {"ok": True, **{name: self.running(name) for name in SERVICES}}


def _names(req: dict[str, Any]) -> tuple[str, ...]:
    service = req.get("service")
    if service in (None, "all"):
        return SERVICES
    if service not in SERVICES:
        raise ValueError(f"unknown forge service {service!r} (ssh, https or all)")
    return (str(service),)


def serve(sock_path: Path, daemons: Daemons) -> None:
    jsonline.serve(sock_path, lambda req: _handle(req, daemons))


def _handle(req: dict[str, Any], daemons: Daemons) -> dict[str, Any]:
    op = req.get("op")
    if op == "start":
        return daemons.start(_names(req))
    if op == "stop":
        return daemons.stop(_names(req))
    if op == "status":
        return daemons.status()
    return {"ok": False, "error": f"unknown op {op!r}"}


def main() -> None:
    import os

    forge_dir = Path(sys.argv[1])
    cfg = json.loads((forge_dir / "forge.json").read_text())
    setup_forge(forge_dir, cfg)
    daemons = Daemons(cfg)
    threading.Thread(target=reap_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: (daemons.stop(), os._exit(0)))
    serve(forge_dir / "init.sock", daemons)


if __name__ == "__main__":
    main()
