"""The command line, one module per verb group: each parses arguments, calls one function, renders.

Exit codes: 0 success or no change, 1 changes found (diff/plan), 2 error, 3 (plan, preview) changes the
agent would refuse.
"""

from controller.cli import (  # noqa: F401  (each registers its verbs)
    adoption,
    audit,
    notify,
    operations,
    preview,
    sandbox,
    secrets,
    snapshot,
    tools,
)
from controller.cli.common import main

__all__ = ["main"]
