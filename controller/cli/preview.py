"""`preview`: a revision applied on a real sandbox copy of the cluster, reported beside its plan."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from controller.cli.common import err, handles_errors, main


def _folder_files(folder: Path) -> dict[str, str]:
    from controller.errors import InputError

    files = {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file() and
             not p.name.startswith(".")}
    if "corosync.conf" not in files:
        raise InputError(f"{folder} has no corosync.conf: not a desired folder")
    return files


def resolve_side(arg: str, repo: Path, path: str | None) -> tuple[str, dict[str, str]]:
    """(label, files) of --base/--head: a desired folder, else a git revision of `repo` (its `path`)."""
    from controller.source.local import read_revision_folder

    if Path(arg).is_dir():
        return arg, _folder_files(Path(arg))
    if path is None:
        raise click.UsageError(f"{arg!r} is no folder, so a git revision: say --path (the cluster folder "
                               "inside the repository)")
    sha, files = read_revision_folder(repo, arg, path)
    return f"{arg} ({sha[:12]}:{path})", files


def default_path(base: str, head: str, repo: Path) -> str | None:
    """With one side a folder inside the repository, a revision on the other side means the same folder."""
    from controller.errors import HaGitopsError
    from controller.source.local import repo_root

    for arg in (base, head):
        folder = Path(arg)
        if folder.is_dir():
            try:
                return folder.resolve().relative_to(repo_root(repo).resolve()).as_posix()
            except (ValueError, HaGitopsError):  # not in this repository, or no repository at all
                return None
    return None


@main.command("preview")
@click.option("--base", default=None, metavar="DIR|REV",
              help="What the sandbox starts from: a desired folder or a git revision (e.g. origin/main).")
@click.option("--snapshot", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Instead of --base: start from the configuration of this `ha-gitops snapshot` file "
                   "(its CIB's configuration and its corosync.conf).")
@click.option("--head", required=True, metavar="DIR|REV",
              help="What is applied on it: a folder or a revision.")
@click.option("--repo", "repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="The git checkout a REV is read from.")
@click.option("--path", "repo_path", default=None, metavar="PATH",
              help="With a REV: the cluster folder inside the repository (default: the folder the other "
                   "side names).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text, markdown (for a pull-request comment) or json.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report (in --format) to FILE.")
@click.option("--state-dir", envvar="HA_GITOPS_PREVIEW_STATE_DIR", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="The private state directory (must not exist or be empty; removed afterwards) "
                   "[env HA_GITOPS_PREVIEW_STATE_DIR; default: a new /var/lib/ha-gitops-preview-*].")
@click.option("--timeout", default=300.0, show_default=True,
              help="Seconds to wait for the agents' verdict on the head.")
@click.option("--identity", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An age identity that can decrypt the folders' secrets.age: the preview's nodes get the "
                   "real values (re-encrypted to them). Without it they get placeholders, and a change of a "
                   "secret's value alone is not previewed.")
@handles_errors
def preview_cmd(base: str | None, snapshot: Path | None, head: str, repo: str, repo_path: str | None,
                fmt: str, out_file: Path | None, state_dir: Path | None, timeout: float,
                identity: Path | None) -> None:
    """Apply HEAD on a sandbox copy of BASE (or of a snapshot's configuration) through the real agents;
    report the plan beside what happened.

    Needs root (the sandbox). Exit 0 no change, 1 applied and verified, 2 error, 3 the head was refused,
    rolled back, or left the cluster unhealthy (as `plan`)."""
    import json

    from controller.preview import report_json, report_markdown, report_text, snapshot_base_files
    from controller.sandbox.preview import run_preview

    if (base is None) == (snapshot is None):
        raise click.UsageError("say --base DIR|REV or --snapshot FILE (exactly one)")
    path = repo_path or default_path(base or head, head, Path(repo))
    if snapshot is not None:
        base_label, base_files = f"snapshot {snapshot}", snapshot_base_files(snapshot.read_text(),
                                                                             str(snapshot))
    else:
        assert base is not None
        base_label, base_files = resolve_side(base, Path(repo), path)
    head_label, head_files = resolve_side(head, Path(repo), path)
    report = run_preview(base_label, head_label, base_files, head_files, state_dir=state_dir, timeout=timeout,
                         snapshot=str(snapshot) if snapshot else None, identity=identity,
                         say=lambda text: err.print(text, markup=False))
    if fmt == "json":
        text = json.dumps(report_json(report), indent=2) + "\n"
    elif fmt == "markdown":
        text = report_markdown(report)
    else:
        text = report_text(report)
    if out_file is not None:
        out_file.write_text(text)
    sys.stdout.write(text)
    sys.exit(report.exit_code)
