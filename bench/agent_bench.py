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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.results_io import now, summary, write  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.topology import SandboxAgents  # noqa: E402
from controller.settings import AgentSettings  # noqa: E402
from tests.conftest import sandbox_repo_dir, sandbox_state  # noqa: E402
from tests.helpers import GitRepo, node_processes  # noqa: E402

STATE = sandbox_state("bench-agent")
REPO = sandbox_repo_dir("bench-agent")
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


def pushed_at(repo: GitRepo, fallback: float) -> float:
    """When the commit became visible: git renames the branch's ref file into place last, so its mtime
    is the moment a watcher can see the push (the time to write files and run git add is not ours)."""
    ref = repo.path / ".git" / "refs" / "heads" / "main"
    try:
        return max(ref.stat().st_mtime, fallback)
    except OSError:
        return fallback


def set_stickiness(repo: GitRepo, value: int) -> str:
    text = re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}", repo.read(f"{FOLDER}/cib.crm"))
    return repo.commit({f"{FOLDER}/cib.crm": text}, f"stickiness {value}")


def wait_initial_sync(sb: Sandbox, sha: str, timeout: float = 120) -> None:
    """Until every node's on-disk CIB carries the initial commit in the marker, the cluster has settled
    (crm_resource --wait) and the DC's agent has finished that pass (its verify polls every 0.3 s)."""
    deadline = time.time() + timeout
    for node in [n.name for n in sb.spec().nodes]:
        cib = sb.layout.node_dir(node) / "var-lib-pacemaker" / "cib" / "cib.xml"
        while sha not in (cib.read_text() if cib.exists() else ""):
            if time.time() > deadline:
                raise RuntimeError(f"initial sync of {sha[:12]} never reached {node}")
            time.sleep(0.1)
    sb.exec("kamailio01", ["crm_resource", "--wait", "--timeout=60s"], timeout=90)
    time.sleep(3.0)


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a host PID."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss_pages = int(fields[21])
    return ticks / os.sysconf("SC_CLK_TCK"), rss_pages * os.sysconf("SC_PAGE_SIZE")


_PASS = re.compile(r"pass \((?P<reasons>[^)]*)\): applied .*\[(?P<timings>[^\]]*)\]$")


def push_pass_stages(sb: Sandbox) -> dict[str, float]:
    """Median seconds per stage of the writer's passes that applied a push (from the agents' logs; stages
    that ran side by side overlap)."""
    per_stage: dict[str, list[float]] = {}
    for log in sb.layout.nodes_dir.glob("*/logs/agent.out"):
        for line in log.read_text(errors="replace").splitlines():
            m = _PASS.search(line)
            if not m or "push" not in m.group("reasons").split(","):
                continue
            for item in m.group("timings").split():
                name, _, value = item.partition("=")
                per_stage.setdefault(name, []).append(float(value))
    return {k: round(statistics.median(v), 3) for k, v in per_stage.items()}


def pss_mb(pid: int) -> float | None:
    """Proportional set size: the process's own pages plus its share of pages shared with others."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def agent_pids(sb: Sandbox, marker: tuple[bytes, ...] = (b"controller.cli", b"agent")) -> dict[str, int]:
    """Host PIDs of the agents: processes in each node's PID namespace running `controller.cli agent`
    (or, with another marker, e.g. the agent's warm crmsh)."""
    found = node_processes({n.name: sb.init_pid(n.name) for n in sb.spec().nodes}, *marker)
    return {node: pids[0] for node, pids in found.items() if pids}

def main(changes: int = 10, warm_crm: str = "dc") -> dict[str, object]:
    shutil.rmtree(REPO, ignore_errors=True)
    repo = GitRepo.create(REPO, {f"{FOLDER}/{p.name}": p.read_text()
                                 for p in (REPO_ROOT / "desired" / "kamailio").iterdir()}, "initial")
    sb = Sandbox(STATE)
    sb.down()
    # The agents run with the defaults a user gets (debounces included), polling every 60 s.
    defaults = AgentSettings.model_fields
    sb.up(REPO_ROOT / "desired" / "kamailio", timeout=90,
          agents=SandboxAgents(repo_url=str(REPO), path=FOLDER, poll_interval=60.0,
                               drift_debounce=defaults["drift_debounce"].default,
                               watch_debounce=defaults["watch_debounce"].default, warm_crm=warm_crm))
    try:
        wait_initial_sync(sb, repo.head())
        push: list[float] = []
        # Values never used before: no crm conversion of an earlier run can come from the cache.
        base = 1000 + int(time.time()) % 100000 * 10
        for i in range(changes):
            value = base + i
            pushed = time.time()
            set_stickiness(repo, value)
            push.append(wait_value(sb, "kamailio01", value) - pushed_at(repo, pushed))
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
        crm = agent_pids(sb, (b"crm_server.py",))  # the agent's warm crmsh, a process of its own
        before = {n: proc_stats(p) for n, p in pids.items()}
        crm_before = {n: proc_stats(p) for n, p in crm.items()}
        window = 65.0
        time.sleep(window)
        after = {n: proc_stats(p) for n, p in pids.items()}
        crm_after = {n: proc_stats(p) for n, p in crm.items()}
        idle: dict[str, dict[str, float | None]]
        idle = {n: {"cpu_percent_of_a_core": round(100 * (after[n][0] - before[n][0]) / window, 3),
                    "rss_mb": round(after[n][1] / 2**20, 1), "pss_mb": pss_mb(pids[n]),
                    "crm_server_cpu_percent_of_a_core": round(
                        100 * (crm_after[n][0] - crm_before[n][0]) / window, 3) if n in crm else None,
                    "crm_server_rss_mb": round(crm_after[n][1] / 2**20, 1) if n in crm else None,
                    "crm_server_pss_mb": pss_mb(crm[n]) if n in crm else None} for n in pids}
    finally:
        sb.down(keep_logs=True)
        shutil.rmtree(REPO, ignore_errors=True)
    stages = push_pass_stages(sb)
    result: dict[str, Any] = {
        "push_to_live_seconds": summary(push),
        "hand_edit_to_corrected_seconds": summary(drift),
        "idle_agents": idle,
        "dc_push_pass_stages_median_seconds": stages,
        "measured_at": now(),
        "notes": "Agents with the default settings (watch_debounce, drift_debounce) and poll_interval 60 s. "
                 "Push to live: from the commit's ref update in the followed repository (the ref file's "
                 "mtime) to the new value in kamailio01's CIB on disk. "
                 "Each push changes cib.crm, so it includes one crmsh conversion (with warm_crm = dc in the "
                 "DC agent's warm crmsh, controller/desired/crm_worker.py; with off in a new crm process). "
                 "Pushes are back to back: each is made once the "
                 "previous one is live. Idle window 65 s (one poll falls inside it).",
    }

    def worst(key: str) -> float | None:
        values = [v[key] for v in idle.values() if v.get(key) is not None]
        return max(values) if values else None

    total = max((v["rss_mb"] + (v["crm_server_rss_mb"] or 0.0)) for v in idle.values())
    total_pss = max(((v["pss_mb"] or 0.0) + (v["crm_server_pss_mb"] or 0.0)) for v in idle.values())
    result["warm_crm"] = warm_crm
    write("agent" if warm_crm == "dc" else f"agent_warm_crm_{warm_crm}", result,
        "| measure | median | max | target |\n|---|---|---|---|\n"
        f"| push to live (watch trigger, {changes} changes) | {result['push_to_live_seconds']['median']} s | "
        f"{result['push_to_live_seconds']['max']} s | < 1 s median |\n"
        f"| hand edit to corrected (5 edits) | {result['hand_edit_to_corrected_seconds']['median']} s | "
        f"{result['hand_edit_to_corrected_seconds']['max']} s | < 2 s |\n"
        f"| idle agent CPU (worst of 3 nodes) | {worst('cpu_percent_of_a_core')} % of a core | | < 1 % |\n"
        f"| idle warm crmsh CPU (worst of 3 nodes) | {worst('crm_server_cpu_percent_of_a_core')} % of a core "
        "| | |\n"
        f"| idle agent RSS (worst of 3 nodes) | {worst('rss_mb')} MB (PSS {worst('pss_mb')} MB) | "
        "| < 80 MB |\n"
        f"| idle warm crmsh RSS (worst of 3 nodes) | {worst('crm_server_rss_mb')} MB "
        f"(PSS {worst('crm_server_pss_mb')} MB) | | |\n"
        f"| idle agent + warm crmsh (worst node) | RSS {round(total, 1)} MB, PSS {round(total_pss, 1)} MB "
        "| | |\n"
        "\nThe writer's passes that applied a push, median seconds per stage (observe runs beside load, "
        "predict beside validate):\n\n"
        + " ".join(f"{k}={v}" for k, v in stages.items()) + "\n"
        f"\n{result['measured_at']}, 2-core machine, warm_crm = \"{warm_crm}\". {result['notes']}\n")
    return result


if __name__ == "__main__":
    # agent_bench.py [CHANGES] [WARM_CRM]: WARM_CRM other than "dc" writes agent_warm_crm_<mode>.{json,md}
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10,
                          sys.argv[2] if len(sys.argv) > 2 else "dc"), indent=1))
