"""How long `ha-gitops preview` takes for the reference cluster, phase by phase.

A clean change (resource-stickiness 100 -> 200: applied and verified, exit 1) `--runs` times, and a failing
one (a Dummy that cannot start: rolled back, exit 3) once, each through `controller.sandbox.preview`, the
code `ha-gitops preview` runs. Writes bench/results/preview.{json,md}: per phase the median and max, and
its share of the whole preview (ratios to compare runs and machines by; nothing here asserts a time).
Run as root: `.venv/bin/python bench/preview_bench.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results_io import RESULTS, now, summary, write  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.preview import run_preview  # noqa: E402

REFERENCE = REPO / "desired" / "kamailio"
STATE = os.environ.get("HA_GITOPS_TEST_SANDBOX_PREFIX", "/var/lib/ha-gitops-sandbox-") + "preview-bench"
PHASES = ["sandbox_up", "initial_sync", "plan", "commit_to_apply", "commit_to_verdict", "teardown", "total"]
BAD_DUMMY = ("primitive DUMMY-BAD ocf:pacemaker:Dummy params state=/nonexistent/dir/state "
             "meta migration-threshold=1 \\\n\top monitor interval=10s timeout=20s\n")


def files(extra: str = "") -> tuple[dict[str, str], dict[str, str]]:
    base = {p.name: p.read_text() for p in REFERENCE.iterdir() if p.is_file()}
    head = dict(base, **{"cib.crm": base["cib.crm"].replace("resource-stickiness=100",
                                                           "resource-stickiness=200") + extra})
    return base, head


def one(extra: str, expect: int) -> dict[str, float]:
    Sandbox(Path(STATE) / "sandbox").down()  # whatever an interrupted run left
    shutil.rmtree(STATE, ignore_errors=True)
    base, head = files(extra)
    report = run_preview("desired/kamailio", "bench head", base, head, state_dir=Path(STATE),
                         say=lambda t: print(t, file=sys.stderr))
    assert report.exit_code == expect, (report.outcome, report.summary)
    assert report.leftovers == {}, report.leftovers
    return report.timings


def table(runs: list[dict[str, float]]) -> dict[str, Any]:
    total = statistics.median(r["total"] for r in runs)
    return {p: {**summary([r[p] for r in runs if p in r], 2),
                "share_of_total": round(statistics.median(r[p] for r in runs if p in r) / total, 3)}
            for p in PHASES if any(p in r for r in runs)}


def main(runs: int) -> dict[str, Any]:
    clean = [one("", 1) for _ in range(runs)]
    failing = [one(BAD_DUMMY, 3)]
    updown = RESULTS / "sandbox_updown.json"
    bare_up = json.loads(updown.read_text())["up_seconds"]["median"] if updown.exists() else None
    result: dict[str, Any] = {
        "clean_change": {"runs": runs, "exit_code": 1, "phases": table(clean)},
        "failing_change": {"runs": 1, "exit_code": 3, "phases": table(failing)},
        "bare_sandbox_up_median": bare_up,
        "measured_at": now(),
    }
    lines = ["| phase | clean change (exit 1): median | max | share | failing change (exit 3) | share |",
             "|---|---|---|---|---|---|"]
    c, f = result["clean_change"]["phases"], result["failing_change"]["phases"]
    for p in PHASES:
        if p in c:
            fp = f.get(p, {})
            lines.append(f"| {p} | {c[p]['median']} s | {c[p]['max']} s | {c[p]['share_of_total']:.0%} | "
                         f"{fp.get('median', '-')} s | {fp.get('share_of_total', 0):.0%} |")
    ratio = (f"; the preview's sandbox up is {c['sandbox_up']['median'] / bare_up:.1f}x a bare `sandbox up` "
             f"({bare_up} s, bench/results/sandbox_updown.md: the agents' start is the difference)"
             if bare_up else "")
    write("preview", result, "\n".join(lines) + "\n\n"
          f"Reference cluster (3 nodes), {runs} clean run(s) and 1 failing run, {result['measured_at']}, "
          f"2-core machine shared with other work. A clean preview takes {c['total']['median']} s end to "
          f"end; most of it is bringing the copy up and its initial sync "
          f"({c['sandbox_up']['share_of_total'] + c['initial_sync']['share_of_total']:.0%})" + ratio + ".\n")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    print(json.dumps(main(ap.parse_args().runs), indent=1))
