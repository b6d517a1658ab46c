"""A desired folder as of a git revision of a local checkout, and the private repository `preview` has its
sandbox agents follow (git argv only here, in source/)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from controller.command import run
from controller.errors import CommandError, InputError

GIT_TIMEOUT = 60.0
# Who commits into preview's private repository (the agents record it as the author).
_IDENTITY = ["-c", "user.name=ha-gitops preview", "-c", "user.email=preview@ha-gitops.invalid",
             "-c", "commit.gpgsign=false"]


def _git(repo: Path, *args: str) -> str:
    try:
        return run(["git", "-C", str(repo), *_IDENTITY, *args], timeout=GIT_TIMEOUT).stdout
    except CommandError as exc:
        raise InputError(f"git {' '.join(args)} in {repo}: {exc}") from exc


def repo_root(path: Path) -> Path:
    """The top of the git checkout `path` is in."""
    return Path(_git(path, "rev-parse", "--show-toplevel").strip())


def resolve_revision(repo: Path, rev: str) -> str:
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()


def read_revision_folder(repo: Path, rev: str, folder: str) -> tuple[str, dict[str, str]]:
    """(commit sha, {file name: text}) of the files directly in `folder` as of `rev`."""
    sha = resolve_revision(repo, rev)
    prefix = PurePosixPath(folder.strip("/") or ".")
    names = _git(repo, "ls-tree", "--name-only", sha, f"{prefix}/" if str(prefix) != "." else ".")
    files: dict[str, str] = {}
    for name in names.splitlines():
        entry = PurePosixPath(name)
        kind = _git(repo, "cat-file", "-t", f"{sha}:{entry}").strip()
        if kind == "blob":
            files[entry.name] = _git(repo, "show", f"{sha}:{entry}")
    if not files:
        raise InputError(f"no files in {folder} at {rev} ({sha[:12]}) of {repo}")
    return sha, files


class PrivateRepo:
    """A throwaway repository on branch main: one commit per desired state handed to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "-q", "-b", "main")

    def commit(self, folder: str, files: dict[str, str], message: str) -> str:
        target = self.path / folder
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            if old.is_file() and old.name not in files:
                old.unlink()
        for name, text in files.items():
            (target / name).write_text(text)
        _git(self.path, "add", "-A")
        _git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return _git(self.path, "rev-parse", "HEAD").strip()
