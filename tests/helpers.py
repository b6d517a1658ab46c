"""Small helpers shared by the tests (no fixtures here: fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
HA_GITOPS = [sys.executable, "-m", "controller.cli"]


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """The first truthy value of predicate() (a falsy one is waited past)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def node_processes(init_pids: dict[str, int], *markers: bytes) -> dict[str, list[int]]:
    """Host PIDs of the processes in each sandbox node (node -> its init's PID, whose PID namespace the
    node is) whose command line has every one of `markers` as an argument (or an argument's file name)."""
    namespaces = {Path(f"/proc/{pid}/ns/pid").readlink(): node for node, pid in init_pids.items()}
    out: dict[str, list[int]] = {node: [] for node in init_pids}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            node = namespaces.get((p / "ns" / "pid").readlink())
            if node is None:
                continue
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(any(part == m or part.endswith(b"/" + m) for part in cmd) for m in markers):
            out[node].append(int(p.name))
    return out


def nice_of(pid: int) -> int:
    """The nice value of a process's main thread."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


class GitRepo:
    """A real git repository the agents follow (a user's checkout they push to)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        r = subprocess.run(["git", "-C", str(self.path), "-c", "user.name=Ops", "-c",
                            "user.email=ops@example.org", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr}"
        return r.stdout.strip()

    @classmethod
    def create(cls, path: Path, files: dict[str, str], message: str = "initial") -> GitRepo:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", "main")
        repo.commit(files, message)
        return repo

    def commit(self, files: dict[str, str], message: str, *, amend: bool = False) -> str:
        for name, text in files.items():
            f = self.path / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, *(["--amend"] if amend else []))
        return self.head()

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
