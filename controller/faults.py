"""Fault injection points, for rehearsing incidents and for the tests: pause the agent at a named point.

HA_GITOPS_FAULT_FILE names a JSON file like {"before-patch": 3} (seconds). It is read at each point, so a
running agent can be paused between reading the CIB and patching it (to race a hand edit against it) or
between writing the CIB and recording the event (to SIGKILL it there); `rollout-before-write` and
`rollout-after-write` pause a corosync.conf rollout around this node's file write (a hung or killed
agent in the middle of a rollout); while it is held, `<fault file>.paused` names the point.
{"fail": {"auto-rollback": "why"}} makes that step fail as a tool failure would (rehearsing a write that
fails when it matters most). No file, no effect.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from controller.env_names import FAULT_FILE_ENV
from controller.errors import HaGitopsError

POINTS = ("before-patch", "after-patch", "after-write", "rollout-before-write", "rollout-after-write")
FAIL_POINTS = ("auto-rollback",)
PAUSED_SUFFIX = ".paused"  # <fault file>.paused: {"point", "seconds", "pid"} while a pause lasts


class InjectedFault(HaGitopsError):
    """A failure asked for by the fault file."""


def fail(point: str) -> None:
    """Raise InjectedFault when the fault file asks this point to fail."""
    path = os.environ.get(FAULT_FILE_ENV)
    if not path:
        return
    try:
        why = json.loads(Path(path).read_text()).get("fail", {}).get(point)
    except (OSError, ValueError, AttributeError):
        return
    if why:
        raise InjectedFault(f"injected fault at {point}: {why}")


def pause(point: str) -> float:
    path = os.environ.get(FAULT_FILE_ENV)
    if not path:
        return 0.0
    try:
        seconds = float(json.loads(Path(path).read_text()).get(point, 0))
    except (OSError, ValueError, AttributeError):
        return 0.0
    if seconds > 0:
        # Announced beside the fault file while it lasts: a rehearsal (or a test) acts once the agent is
        # really held there, not after a guess at how long the pass takes to get there.
        paused = Path(path + PAUSED_SUFFIX)
        with contextlib.suppress(OSError):
            paused.write_text(json.dumps({"point": point, "seconds": seconds, "pid": os.getpid()}))
        try:
            time.sleep(seconds)
        finally:
            paused.unlink(missing_ok=True)
    return seconds
