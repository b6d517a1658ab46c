"""corosync.conf rollout on the sandbox: a reload change across 3 nodes, a rolling restart, VIP outage.

Writes bench/results/corosync_rollout.{json,md}. Run as root:
`.venv/bin/python bench/corosync_rollout_bench.py [rounds]`. Times run from the `git commit` to every
node's CIB attribute saying it runs the new file (ha-gitops-corosync-applied): the agents' push detection
is included. The VIP is pinged every 20 ms from the standby node's namespace (it never holds the VIP);
the outage is the longest gap between answers.
"""

from __future__ import annotations

import functools
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from controller.cib.marker import read_marker  # noqa: E402
from controller.rollout import ATTR_APPLIED, text_digest  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.topology import SandboxAgents  # noqa: E402
from tests.conftest import REFERENCE, sandbox_repo_dir, sandbox_state  # noqa: E402
from tests.helpers import GitRepo, wait_for  # noqa: E402
from tests.rollout.test_rollout_on_sandbox import (  # noqa: E402
    CONF,
    FOLDER,
    VipPinger,
    applied_everywhere,
    attrs,
    set_key,
    steps,
)

STATE = sandbox_state("bench-rollout")  # HA_GITOPS_TEST_SANDBOX_PREFIX keeps two checkouts apart
REPO = sandbox_repo_dir("bench-rollout")
RESULTS = REPO_ROOT / "bench" / "results"


def main(rounds: int) -> None:
    shutil.rmtree(REPO, ignore_errors=True)
    files = {f"{FOLDER}/{p.name}": p.read_text() for p in REFERENCE.iterdir() if p.is_file()}
    repo = GitRepo.create(REPO, files, "initial")
    sb = Sandbox(STATE)
    sb.down()
    sb.up(REFERENCE, timeout=90,
          agents=SandboxAgents(repo_url=str(REPO), path=FOLDER, poll_interval=5.0, drift_debounce=0.2))
    try:
        head = repo.head()
        wait_for(lambda: read_marker(sb.cluster("kamailio01").read_cib()).revision == head, 60,
                 "initial sync")
        d0 = text_digest(repo.read(CONF))
        wait_for(lambda: all(a.get(ATTR_APPLIED) == d0 for a in attrs(sb).values()), 60, "initial report")
        reloads: list[float] = []
        for i in range(rounds):
            text = set_key(repo.read(CONF), "totem", "token", str(1000 + 500 * (i % 2)))
            t0 = time.monotonic()
            repo.commit({CONF: text}, f"token round {i}")
            digest = text_digest(text)
            wait_for(functools.partial(applied_everywhere, sb, digest), 60, "reload", interval=0.05)
            reloads.append(round(time.monotonic() - t0, 2))
        per_node: list[float] = []
        gaps: list[float] = []
        totals: list[float] = []
        for i in range(rounds):
            conf = repo.read(CONF)
            value = "no" if i % 2 == 0 else "auto"
            text = set_key(conf, "system", "move_to_root_cgroup", value) if "system {" in conf \
                else conf + f"system {{\nmove_to_root_cgroup: {value}\n}}\n"
            ping = VipPinger(sb, "kamailio03", interval=0.02)
            time.sleep(1)
            t0 = time.monotonic()
            repo.commit({CONF: text}, f"rolling round {i}")
            digest = text_digest(text)
            try:
                wait_for(functools.partial(applied_everywhere, sb, digest), 180, "rolling restart",
                         interval=0.5)
                totals.append(round(time.monotonic() - t0, 1))
                time.sleep(1)
            finally:
                gaps.append(round(ping.stop(), 3))
            per_node += [e["details"]["seconds"] for e in steps(sb, digest, "restarted")]
    finally:
        sb.down()
        shutil.rmtree(REPO, ignore_errors=True)
    result: dict[str, Any] = {
        "rounds": rounds,
        "reload_seconds": reloads, "reload_median": statistics.median(reloads), "reload_max": max(reloads),
        "rolling_total_seconds": totals, "rolling_per_node_seconds": per_node,
        "rolling_per_node_median": statistics.median(per_node), "rolling_per_node_max": max(per_node),
        "vip_longest_gap_seconds": gaps, "vip_longest_gap_max": max(gaps),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "corosync_rollout.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [
        "# corosync.conf rollout on the sandbox (3 nodes, `bench/corosync_rollout_bench.py`)", "",
        "| Measure | Median | Max | Target |", "|---|---|---|---|",
        f"| reload change (token), commit -> runtime verified on 3 nodes | {result['reload_median']} s | "
        f"{result['reload_max']} s | < 5 s |",
        f"| rolling restart, per node (standby, restart, rejoin, unstandby) | "
        f"{result['rolling_per_node_median']} s | {result['rolling_per_node_max']} s | |",
        f"| rolling restart, whole cluster (commit -> 3 nodes restarted) | {statistics.median(totals)} s | "
        f"{max(totals)} s | |",
        f"| longest VIP (10.220.1.25) gap during a rolling restart, ping every 20 ms | "
        f"{statistics.median(gaps)} s | {result['vip_longest_gap_max']} s | < 1 s |",
        "", f"{rounds} round(s) each. Reload times include the agents noticing the push (watch on the refs).",
    ]
    (RESULTS / "corosync_rollout.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
