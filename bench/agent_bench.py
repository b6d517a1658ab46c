"""Agent on the sandbox: push-to-live latency, hand-edit-to-corrected latency, idle CPU and memory.

Writes bench/results/agent.{json,md}. Run as root: `.venv/bin/python bench/agent_bench.py [changes]`.
Latencies end when the node's on-disk CIB (/var/lib/pacemaker/cib/cib.xml, which Pacemaker rewrites
within ~15 ms of every configuration change) carries the value: the bench reads that file from the host
every 10 ms, so measuring costs the cluster nothing (polling with crm_attribute would load the CPU the
agents need).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.topology import SandboxAgents  # noqa: E402
from tests.helpers import GitRepo  # noqa: E402

STATE = "/var/lib/ha-gitops-sandbox-bench-agent"
REPO = Path("/var/lib/ha-gitops-test-repos/bench-agent")
FOLDER = "kamailio"
def wait_value(sb: Sandbox, node: str, value: int, timeout: float = 60, after_epoch: int = -1) -> float:
    """The time at which the node's CIB on disk first has resource-stickiness = value (in a version whose
    epoch is above after_epoch)."""
    cib = sb.layout.node_dir(node) / "var-lib-pacemaker" / "cib" / "cib.xml"
    pattern = re.compile(rf'name="resource-stickiness" value="{value}"')
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            text = cib.read_text()
            m = re.search(r'<cib [^>]*\bepoch="(\d+)"', text)
            if pattern.search(text) and m and int(m.group(1)) > after_epoch:
                return time.time()
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"value {value} never reached {node}")


def set_stickiness(repo: GitRepo, value: int) -> str:
    text = re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}", repo.read(f"{FOLDER}/cib.crm"))
    return repo.commit({f"{FOLDER}/cib.crm": text}, f"stickiness {value}")


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a host PID."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_pages = int(fields[21])
    return ticks / os.sysconf("SC_CLK_TCK"), rss_pages * os.sysconf("SC_PAGE_SIZE")


def agent_pids(sb: Sandbox) -> dict[str, int]:
    """Host PIDs of the agents: processes in each node's PID namespace running `controller.cli agent`."""
    out: dict[str, int] = {}
    for node in [n.name for n in sb.spec().nodes]:
        ns = Path(f"/proc/{sb.init_pid(node)}/ns/pid").readlink()
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if (p / "ns" / "pid").readlink() != ns:
                    continue
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"controller.cli" in cmd and b"agent" in cmd:
                out[node] = int(p.name)
    return out


def main(changes: int = 10) -> dict[str, object]:
    shutil.rmtree(REPO, ignore_errors=True)
    repo = GitRepo.create(REPO, {f"{FOLDER}/{p.name}": p.read_text()
                                 for p in (REPO_ROOT / "desired" / "kamailio").iterdir()}, "initial")
    sb = Sandbox(STATE)
    sb.down()
    sb.up(REPO_ROOT / "desired" / "kamailio", timeout=90,
          agents=SandboxAgents(repo_url=str(REPO), path=FOLDER, poll_interval=60.0, drift_debounce=0.2,
                               watch_debounce=0.05))
    try:
        wait_value(sb, "kamailio01", 100, 90)  # the initial sync
        push: list[float] = []
        # Values never used before: no crm conversion of an earlier run can come from the cache.
        base = 1000 + int(time.time()) % 100000 * 10
        for i in range(changes):
            value = base + i
            t0 = time.time()
            set_stickiness(repo, value)
            push.append(wait_value(sb, "kamailio01", value) - t0)
        drift: list[float] = []
        wanted = base + changes - 1
        for i in range(5):
            time.sleep(1.0)
            r = sb.exec("kamailio02", ["sh", "-c", "crm_attribute -t rsc_defaults -s rsc-options -n "
                                       f"resource-stickiness -v {7 + i} >/dev/null && date +%s.%N && "
                                       "cibadmin -Q --local | head -n 1"])
            stamp, cib_line = r.stdout.strip().split("\n", 1)
            m = re.search(r'\bepoch="(\d+)"', cib_line)
            assert m, cib_line
            # Corrected = the wanted value again, in a CIB version newer than the hand edit's.
            drift.append(wait_value(sb, "kamailio02", wanted, after_epoch=int(m.group(1))) - float(stamp))
        # Idle: no pushes, no edits; the agents poll every 60 s (one poll falls inside the window).
        time.sleep(3)
        pids = agent_pids(sb)
        before = {n: proc_stats(p) for n, p in pids.items()}
        window = 65.0
        time.sleep(window)
        after = {n: proc_stats(p) for n, p in pids.items()}
        idle = {n: {"cpu_percent_of_a_core": round(100 * (after[n][0] - before[n][0]) / window, 3),
                    "rss_mb": round(after[n][1] / 2**20, 1)} for n in pids}
    finally:
        sb.down()
        shutil.rmtree(REPO, ignore_errors=True)
    result = {
        "push_to_live_seconds": {"median": round(statistics.median(push), 3), "max": round(max(push), 3),
                                 "all": [round(x, 3) for x in push]},
        "hand_edit_to_corrected_seconds": {"median": round(statistics.median(drift), 3),
                                           "max": round(max(drift), 3), "all": [round(x, 3) for x in drift]},
        "idle_agents": idle,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "notes": "cib.crm changes: each push includes one crmsh conversion (the crm syntax is converted "
                 "by crmsh itself, ~0.5 s). Idle window 65 s with poll_interval 60 s.",
    }
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent.json").write_text(json.dumps(result, indent=1) + "\n")
    cpu = max(v["cpu_percent_of_a_core"] for v in idle.values())
    rss = max(v["rss_mb"] for v in idle.values())
    (out / "agent.md").write_text(
        "| measure | median | max | target |\n|---|---|---|---|\n"
        f"| push to live (watch trigger, {changes} changes) | {result['push_to_live_seconds']['median']} s | "
        f"{result['push_to_live_seconds']['max']} s | < 1 s median |\n"
        f"| hand edit to corrected (5 edits) | {result['hand_edit_to_corrected_seconds']['median']} s | "
        f"{result['hand_edit_to_corrected_seconds']['max']} s | < 2 s |\n"
        f"| idle agent CPU (worst of 3 nodes) | {cpu} % of a core | | < 1 % |\n"
        f"| idle agent RSS (worst of 3 nodes) | {rss} MB | | < 80 MB |\n"
        f"\n{result['measured_at']}, 2-core machine. {result['notes']}\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=1))
