"""Real git repositories for the source tests: an upstream (bare) repo and a working clone that pushes."""

from __future__ import annotations

from pathlib import Path

from controller.command import run

IDENTITY = ["-c", "user.name=Ada Admin", "-c", "user.email=ada@example.org", "-c", "commit.gpgsign=false"]


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return run(["git", *args], cwd=str(cwd) if cwd else None, env=env, timeout=30).stdout.strip()


class Upstream:
    """bare: what the agent fetches from; work: where the 'operator' commits and pushes."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.root = root
        self.bare = root / "upstream.git"
        self.work = root / "work"
        self.branch = branch
        git("init", "-q", "--bare", "-b", branch, str(self.bare))
        git("init", "-q", "-b", branch, str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str | None], message: str, *, sign: list[str] | None = None,
               env: dict[str, str] | None = None, push: bool = True) -> str:
        """Write (or delete, value None) files, commit (signed with `sign` -c options) and push."""
        for rel, text in files.items():
            p = self.work / rel
            if text is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
        git("add", "-A", cwd=self.work)
        git(*IDENTITY, *(sign or []), "commit", "-q", *(["-S"] if sign else []), "--allow-empty", "-m",
            message, cwd=self.work, env=env)
        if push:
            self.push()
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{self.branch}",
            cwd=self.work)

    def reset_hard(self, ref: str) -> None:
        git("reset", "-q", "--hard", ref, cwd=self.work)

    def tip(self) -> str:
        return git("--git-dir", str(self.bare), "rev-parse", f"refs/heads/{self.branch}")


CLUSTER = {"cluster/corosync.conf": "totem {\n    version: 2\n}\n",
           "cluster/cib.crm": "property cib-bootstrap-options: stonith-enabled=false\n",
           "cluster/cluster.toml": "[cluster]\nname = \"demo\"\n"}
