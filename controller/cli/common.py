"""What every verb group shares: the `main` group, the consoles, output helpers and error handling.

Exit codes: 0 success or no change, 1 changes found (diff/plan), 2 error, 3 (plan) changes the agent
would refuse.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape as rich_escape

from controller.errors import HaGitopsError

# Not a terminal (CI logs, pipes): wide enough that tables are not squeezed to 80 columns.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

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
            err.print(f"[bold red]error:[/] {rich_escape(str(exc))}", markup=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ha-gitops")
def main() -> None:
    """ha-gitops: a Pacemaker/Corosync cluster's configuration, kept in git."""


def exit_without_teardown(code: int) -> None:
    """sys.exit(code), but as the console script skip the interpreter's teardown: freeing two
    parsed 7 MB CIBs takes ~30 ms, and nothing is left to do once the output is flushed."""
    if getattr(sys.modules.get("__main__"), "main", None) is main:  # not CliRunner or a test
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

