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


def run() -> None:
    main()


if __name__ == "__main__":
    main()
