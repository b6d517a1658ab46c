"""The command line: parse arguments, call one function, render its result.

Exit codes: 0 success or no change, 1 changes found (diff/plan), 2 error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from controller.errors import HaGitopsError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Human output or JSON for machines.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into a message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HaGitopsError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ha-gitops")
def main() -> None:
    """ha-gitops: a Pacemaker/Corosync cluster's configuration, kept in git."""


# Command groups are added below, one section per verb, each calling into the package.


# ---- corosync


@main.group()
def corosync() -> None:
    """corosync.conf tools."""


@corosync.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@FORMAT_OPTION
@handles_errors
def corosync_diff(old: Path, new: Path, fmt: str) -> None:
    """Key-level changes from OLD to NEW corosync.conf, each classed reload / rolling-restart /
    cluster-restart. Exit 0: no change, 1: changes, 2: error."""
    from controller.corosync import diff_corosync, parse_corosync
    from controller.errors import InputError

    docs = []
    for path in (old, new):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc
        docs.append(parse_corosync(data, source=str(path)))
    changes = diff_corosync(docs[0], docs[1])
    if fmt == "json":
        print_json([c.as_dict() for c in changes])
    elif not changes:
        out.print("no change")
    else:
        for c in changes:
            out.print(f"{c.change_class:<16} {c.path}: {c.old if c.old is not None else '(unset)'} -> "
                      f"{c.new if c.new is not None else '(unset)'}", markup=False)
    sys.exit(1 if changes else 0)

# ---- end corosync


def run() -> None:
    main()


if __name__ == "__main__":
    main()
