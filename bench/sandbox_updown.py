"""Times `sandbox up` (to quorum + DC) and `sandbox down` for the reference cluster, several cycles.

Writes bench/results/sandbox_updown.{json,md}. Run as root: `make bench`, or
`.venv/bin/python bench/sandbox_updown.py`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results_io import now, summary, write  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402

STATE = "/var/lib/ha-gitops-sandbox-bench"


def main(cycles: int = 5) -> dict[str, object]:
    sb = Sandbox(STATE)
    sb.down()
    ups: list[float] = []
    downs: list[float] = []
    for _ in range(cycles):
        t0 = time.monotonic()
        sb.up(REPO / "desired" / "kamailio", timeout=90)
        ups.append(time.monotonic() - t0)
        t0 = time.monotonic()
        sb.down()
        downs.append(time.monotonic() - t0)
        assert sb.leftovers() == {"processes": [], "netns": [], "mounts": []}
    result: dict[str, Any] = {
        "cycles": cycles,
        "up_seconds": summary(ups, 2),
        "down_seconds": summary(downs),
        "targets": {"up": "< 10 s", "down": "< 1 s"},
        "measured_at": now(),
    }
    write("sandbox_updown", result,
        "| step | median | max | target |\n|---|---|---|---|\n"
        f"| sandbox up (quorum + DC) | {result['up_seconds']['median']} s | {result['up_seconds']['max']} s "
        "| < 10 s |\n"
        f"| sandbox down | {result['down_seconds']['median']} s | {result['down_seconds']['max']} s "
        "| < 1 s |\n"
        f"\n{cycles} cycles, {result['measured_at']}, 2-core machine.\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=1))
