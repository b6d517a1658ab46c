"""Agents following the sandbox's forge over ssh: push to live with the forge's webhook and without it
(poll_interval 5 s), and the idle agent's CPU and memory with its HTTP server and notifications on.

Writes bench/results/forge.{json,md}. Run as root: `.venv/bin/python bench/forge_bench.py [pushes]`.
A push is `git push` inside the forge's namespace, from its work clone; the clock starts when the push
has updated the branch (the bare repository's ref file, whose mtime is when the post-receive hook can
run and a poll can see it) and stops when kamailio01's CIB on disk has the value (bench/agent_bench.py
wait_value). Both runs use the same forge, cluster and push loop: only the trigger differs.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.agent_bench import agent_pids, proc_stats, pss_mb, wait_initial_sync, wait_value  # noqa: E402
from bench.results_io import now, summary, write  # noqa: E402
from controller.sandbox.forge import ForgeLayout  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.topology import FORGE, SandboxAgents  # noqa: E402
from tests.conftest import sandbox_repo_dir, sandbox_state  # noqa: E402
from tests.helpers import GitRepo  # noqa: E402

FOLDER = "kamailio"
# Notifications on, to a receiver that never gets anything to send while idle (the outbox is empty):
# what they cost idle is the sender thread and Apprise loaded.
NOTIFY = '[[notify]]\nname = "bench"\nurl = "json://{address}:8099/hook"\n'
IDLE_WINDOW = 65.0


def forge_push(sb: Sandbox, value: int) -> float:
    """Commit and push resource-stickiness=value in the forge; when the branch moved (ref mtime)."""
    work = ForgeLayout(sb.layout.root).work
    crm = work / FOLDER / "cib.crm"
    crm.write_text(re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}", crm.read_text()))
    git = ["git", "-C", str(work)]
    sb.exec(FORGE, [*git, "commit", "-q", "-a", "-m", f"stickiness {value}"], check=True)
    before = time.time()
    sb.exec(FORGE, [*git, "push", "-q", "origin", "HEAD:main"], check=True)
    forge = sb.spec().forge
    assert forge is not None
    ref = Path(forge.repo) / "refs" / "heads" / "main"
    try:
        return max(ref.stat().st_mtime, before)
    except OSError:
        return before


def run(name: str, *, webhooks: bool, poll_interval: float, pushes: int, idle: bool) -> dict[str, Any]:
    repo_dir = sandbox_repo_dir(f"bench-forge-{name}")
    shutil.rmtree(repo_dir, ignore_errors=True)
    repo = GitRepo.create(repo_dir, {f"{FOLDER}/{p.name}": p.read_text()
                                     for p in (REPO_ROOT / "desired" / "kamailio").iterdir()}, "initial")
    sb = Sandbox(sandbox_state(f"bench-forge-{name}"))
    sb.down()
    spec_address = "10.220.1.253"  # the forge's address on the reference cluster's network
    agents = SandboxAgents(repo_url=str(repo_dir), path=FOLDER, poll_interval=poll_interval, forge=True,
                           remote="ssh", webhooks=webhooks,
                           agent_config=NOTIFY.format(address=spec_address) if idle else "")
    sb.up(REPO_ROOT / "desired" / "kamailio", timeout=120, agents=agents)
    out: dict[str, Any] = {"webhooks": webhooks, "poll_interval": poll_interval}
    try:
        forge = sb.spec().forge
        assert forge is not None and forge.address == spec_address, forge
        wait_initial_sync(sb, repo.head())
        latencies: list[float] = []
        base = 1000 + int(time.time()) % 100000 * 10
        for i in range(pushes):
            value = base + i
            pushed = forge_push(sb, value)
            latencies.append(wait_value(sb, "kamailio01", value, timeout=poll_interval * 3 + 60) - pushed)
        out["push_to_live_seconds"] = summary(latencies)
        out["push_to_live_all"] = [round(v, 3) for v in latencies]
        if idle:
            time.sleep(3)
            pids = agent_pids(sb)
            before = {n: proc_stats(p) for n, p in pids.items()}
            time.sleep(IDLE_WINDOW)
            after = {n: proc_stats(p) for n, p in pids.items()}
            out["idle_agents"] = {
                n: {"cpu_percent_of_a_core": round(100 * (after[n][0] - before[n][0]) / IDLE_WINDOW, 3),
                    "rss_mb": round(after[n][1] / 2**20, 1), "pss_mb": pss_mb(pids[n])} for n in pids}
            # The HTTP server answered all along: a scrape from inside a node, as Prometheus would.
            scrape = ("import urllib.request as u; "
                      "print(len(u.urlopen('http://10.220.1.21:9811/metrics', timeout=5).read()))")
            r = sb.exec("kamailio02", [sys.executable, "-c", scrape])
            out["metrics_bytes"] = int(r.stdout.strip() or 0)
    finally:
        sb.down(keep_logs=True)
        shutil.rmtree(repo_dir, ignore_errors=True)
    return out


def main(pushes: int = 10) -> dict[str, Any]:
    hooked = run("webhook", webhooks=True, poll_interval=60.0, pushes=pushes, idle=True)
    polled = run("poll", webhooks=False, poll_interval=5.0, pushes=pushes, idle=False)
    result: dict[str, Any] = {"webhook": hooked, "poll_5s": polled, "measured_at": now(), "pushes": pushes}
    idle = hooked["idle_agents"]

    def worst(key: str) -> float:
        return max(float(v[key] or 0.0) for v in idle.values())

    w, p = hooked["push_to_live_seconds"], polled["push_to_live_seconds"]
    write("forge", result,
          "| measure | median | max | target |\n|---|---|---|---|\n"
          f"| push to live over ssh, forge webhook (poll 60 s) | {w['median']} s | {w['max']} s "
          "| < 1 s median |\n"
          f"| push to live over ssh, no webhook, poll_interval 5 s | {p['median']} s | {p['max']} s "
          "| < 6 s (poll + 1 s) |\n"
          "| idle agent CPU, HTTP server + notifications on (worst of 3) | "
          f"{worst('cpu_percent_of_a_core')} % of a core | | < 1 % |\n"
          f"| idle agent RSS (worst of 3) | {worst('rss_mb')} MB (PSS {worst('pss_mb')} MB) | "
          "| < 80 MB |\n"
          f"\n{pushes} pushes per run, back to back (each once the previous one is live), made with "
          "`git push` inside the forge's namespace to its bare repository; the agents fetch over ssh with "
          "their deploy keys. Webhook run: the forge's post-receive hook posts a signed GitHub push "
          "event to every agent's /hooks/github. Idle window "
          f"{IDLE_WINDOW:g} s with one [[notify]] target configured and the HTTP listener on 0.0.0.0:9811 "
          f"(a /metrics scrape afterwards returned {hooked.get('metrics_bytes')} bytes). "
          f"{result['measured_at']}, 2-core machine.\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=1))
