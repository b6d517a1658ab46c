"""A desired folder at another revision of the git work tree it lives in (`plan --base REV`)."""

from __future__ import annotations

from pathlib import Path

from controller.command import run
from controller.desired.state import COROSYNC_FILE, CRM_FILE, POLICY_FILE, XML_FILE
from controller.errors import CommandError, InputError

GIT_TIMEOUT = 60.0
DESIRED_FILES = (COROSYNC_FILE, CRM_FILE, XML_FILE, POLICY_FILE)


def _git(folder: Path, *args: str, check: bool = True) -> str:
    return run(["git", "-C", str(folder), *args], timeout=GIT_TIMEOUT, check=check).stdout


def folder_at(folder: Path, rev: str, dest: Path) -> str:
    """Write `folder`'s desired files as they are at `rev` (of the work tree `folder` is in) to `dest`;
    the commit's sha. A file the revision does not have is not written (the loader names what is
    missing)."""
    try:
        sha = _git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        prefix = _git(folder, "rev-parse", "--show-prefix").strip()
    except CommandError as exc:
        raise InputError(f"--base {rev}: not a revision of the git work tree {folder} "
                         f"({(exc.stderr or exc.stdout).strip() or 'git rev-parse failed'})") from exc
    dest.mkdir(parents=True, exist_ok=True)
    found = 0
    for name in DESIRED_FILES:
        r = run(["git", "-C", str(folder), "cat-file", "blob", f"{sha}:{prefix}{name}"], timeout=GIT_TIMEOUT,
                check=False)
        if r.returncode == 0:
            (dest / name).write_text(r.stdout, encoding="utf-8", errors="surrogateescape")
            found += 1
    if not found:
        raise InputError(f"--base {rev}: the folder {prefix or '.'} holds no desired file at {sha[:12]}")
    return sha
