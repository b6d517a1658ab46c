"""`ha-gitops sandbox demo`: the whole loop on the sandbox, narrated (what `make demo` runs).

Agents on every node follow a local git repository seeded from the reference cluster: the initial sync, a
commit applied within about a second, a hand edit undone as drift, a rollback, and the audit log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.sandbox.manager import Sandbox
from controller.sandbox.topology import SandboxAgents

# Inside the sandbox's state directory (not /tmp: every node must see it), so `sandbox down` removes it.
DEMO_REPO_NAME = "demo-repo"
FOLDER = "kamailio"
HA_GITOPS = [sys.executable, "-m", "controller.cli"]


def _git(repo: Path, *args: str) -> str:
    r = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Demo Operator",
                        "-c", "user.email=ops@example.org", *args],
                       capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {r.stderr}")
    return r.stdout.strip()


def _wait(predicate: Callable[[], Any], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise RuntimeError("timed out")


def run_demo(cluster_dir: str | Path, say: Callable[[str], None], state_dir: str | None = None) -> None:
    cluster_dir = Path(cluster_dir)
    sb = Sandbox(state_dir)
    sb.down()
    demo_repo = sb.layout.root / DEMO_REPO_NAME
    (demo_repo / FOLDER).mkdir(parents=True)
    for f in cluster_dir.iterdir():
        if f.is_file():
            shutil.copy(f, demo_repo / FOLDER / f.name)
    _git(demo_repo, "init", "-q", "-b", "main")
    _git(demo_repo, "add", "-A")
    _git(demo_repo, "commit", "-q", "-m", "kamailio: desired state from desired/kamailio")
    say(f"1. git repository {demo_repo} seeded from {cluster_dir}")

    up = sb.up(cluster_dir, timeout=90, agents=SandboxAgents(repo_url=str(demo_repo), path=FOLDER,
                                                             drift_debounce=0.2, watch_debounce=0.1))
    say(f"2. sandbox up in {up.seconds:.1f}s (DC {up.dc}); one agent per node, following main:{FOLDER}")

    def cli(node: str, *args: str) -> str:
        return sb.exec(node, [*HA_GITOPS, *args]).stdout

    def stickiness() -> str:
        return sb.exec("kamailio01", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                                      "resource-stickiness", "-G", "-q"]).stdout.strip()

    head = _git(demo_repo, "rev-parse", "HEAD").strip()

    def initial_sync_verified() -> bool:
        # The DC's agent has applied the first commit and finished verifying it (resources started).
        try:
            dc = json.loads(cli("kamailio01", "status", "--format", "json")).get("dc")
            st = json.loads(cli(dc, "status", "--format", "json")) if dc else {}
        except ValueError:
            return False
        agent = st.get("agent") or {}
        return (st.get("applied") or {}).get("revision") == head and agent.get("leader") is True \
            and agent.get("revision") == head and agent.get("outcome") in ("applied", "no-change")

    took = _wait(initial_sync_verified, 90)
    say(f"3. initial sync: the reference configuration is live and verified {took:.1f}s later")
    _wait(lambda: "is running on" in sb.exec("kamailio01", ["crm_resource", "--locate", "-r",
                                                          "KAMAILIO01"]).stdout, 60)
    say(sb.exec("kamailio01", ["crm_mon", "-1", "-r"]).stdout)

    text = (demo_repo / FOLDER / "cib.crm").read_text()
    (demo_repo / FOLDER / "cib.crm").write_text(
        re.sub(r"resource-stickiness=\d+", "resource-stickiness=200", text))
    _git(demo_repo, "commit", "-q", "-am", "raise resource-stickiness to 200")
    took = _wait(lambda: stickiness() == "200", 30)
    say(f"4. commit 'raise resource-stickiness to 200' pushed: live {took:.2f}s later")

    sb.exec("kamailio02", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                           "resource-stickiness", "-v", "5"])
    say("5. hand edit on kamailio02: crm_attribute ... resource-stickiness -v 5")
    took = _wait(lambda: stickiness() == "200", 30)
    say(f"   drift noticed and undone {took:.2f}s later (resource-stickiness is 200 again)")

    events = cli("kamailio01", "audit", "log", "--format", "json", "--kind", "apply")
    apply_id = next(e["id"] for e in json.loads(events) if e["commit"] and "stickiness" in
                    (e["commit"]["message"] or ""))
    say(f"6. ha-gitops rollback {apply_id}  (the apply of the stickiness commit, on kamailio01)")
    say("   " + cli("kamailio01", "rollback", str(apply_id)).strip())
    say("   " + cli("kamailio01", "status").replace("\n", "\n   ").rstrip())
    say("7. the audit log on kamailio03 (every node has the whole history):")
    say(cli("kamailio03", "audit", "log"))
    say("The sandbox stays up: `ha-gitops sandbox status`, "
        "`ha-gitops sandbox exec kamailio01 -- crm_mon -1`, `make demo-down` to stop it.")
