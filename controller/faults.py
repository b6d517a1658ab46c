"""Fault injection points, for rehearsing incidents and for the tests: pause the agent at a named point.

HA_GITOPS_FAULT_FILE names a JSON file like {"before-patch": 3} (seconds). It is read at each point, so a
running agent can be paused between reading the CIB and patching it (to race a hand edit against it) or
between writing the CIB and recording the event (to SIGKILL it there). No file, no effect.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

POINTS = ("before-patch", "after-write")


def pause(point: str) -> float:
    path = os.environ.get("HA_GITOPS_FAULT_FILE")
    if not path:
        return 0.0
    try:
        seconds = float(json.loads(Path(path).read_text()).get(point, 0))
    except (OSError, ValueError, AttributeError):
        return 0.0
    if seconds > 0:
        time.sleep(seconds)
    return seconds
