"""Small helpers shared by the tests (no fixtures here: fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
HA_GITOPS = [sys.executable, "-m", "controller.cli"]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last  # type: ignore[return-value]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


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
