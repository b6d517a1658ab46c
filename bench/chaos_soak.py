"""A bounded chaos soak: pushes, hand edits and mixed faults on the reference sandbox cluster with its three
agents for a set time, then heal everything, wait for convergence and judge the invariants from evidence.

Run as root: `.venv/bin/python bench/chaos_soak.py --minutes 15 [--seed N]` (`--minutes 3` for a smoke run).
Writes bench/results/chaos_soak.{json,md}; the whole evidence (audit trails, marker timeline, writes,
quorum changes) goes to `sandbox_state("chaos-soak-evidence")/evidence.json`, and the sandbox's logs stay
in `sandbox_state("chaos-soak")/nodes/*/` for a look at any violation.

What the soak does (seeded; timings are real, so two runs with one seed make the same choices, not the
same interleavings):
- pushes every 2-6 s: valid CIB changes (rsc_defaults resource-stickiness, IP-HA-01's migration-threshold,
  adding and deleting Dummy primitives), invalid commits (a missing agent, a constraint naming nothing)
  that must be refused, now and then a valid but unhealthy commit (an IPaddr2 on a NIC that does not
  exist: the only kind that may be rolled back), and rarely a corosync.conf token change or its revert;
- hand edits on a node not under a fault (crm_attribute, `crm resource meta`, `cibadmin --modify`), each
  writing a value nothing else writes, so its drift event can be found by that value;
- one fault at a time on a random node (the DC half of the time), healed after 10-30 s: agent kill -9,
  pacemaker killed, corosync killed, the node's cable cut, its power pulled.
The invariants are judged in bench/soak_check.py (pure, unit-tested).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import soak_check as sc  # noqa: E402
from bench.results_io import now, write  # noqa: E402
from controller.errors import HaGitopsError  # noqa: E402
from controller.sandbox.manager import Sandbox  # noqa: E402
from controller.sandbox.topology import SandboxAgents  # noqa: E402
from tests.conftest import sandbox_repo_dir, sandbox_state  # noqa: E402
from tests.helpers import HA_GITOPS, GitRepo  # noqa: E402

STATE = sandbox_state("chaos-soak")
REPO = sandbox_repo_dir("chaos-soak")
EVIDENCE = Path(sandbox_state("chaos-soak-evidence"))
FOLDER = "kamailio"
NODES = ["kamailio01", "kamailio02", "kamailio03"]
AGENT_TOML = "/etc/ha-gitops/agent.toml"
FAULTS = ["agent-kill", "pacemaker-kill", "corosync-kill", "cut", "poweroff"]


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


class Desired:
    """The soak's model of the desired folder: renders cib.crm and corosync.conf from a few knobs."""

    def __init__(self) -> None:
        self.crm = (REPO_ROOT / "desired" / "kamailio" / "cib.crm").read_text()
        self.corosync = (REPO_ROOT / "desired" / "kamailio" / "corosync.conf").read_text()
        self.stickiness = 100
        self.threshold = 2
        self.dummies: list[str] = []
        self.token = 3000

    def files(self, extra: str = "") -> dict[str, str]:
        crm = re.sub(r"resource-stickiness=\d+", f"resource-stickiness={self.stickiness}", self.crm)
        crm = re.sub(r"migration-threshold=\d+", f"migration-threshold={self.threshold}", crm)
        crm += "".join(f"primitive {d} ocf:pacemaker:Dummy \\\n\top monitor interval=30s timeout=20s\n"
                       for d in self.dummies) + extra
        coro = re.sub(r"^token: \d+$", f"token: {self.token}", self.corosync, flags=re.M)
        return {f"{FOLDER}/cib.crm": crm, f"{FOLDER}/corosync.conf": coro}


class MarkerPoller(threading.Thread):
    """Every node's CIB on disk, read from the host every 50 ms (costs the cluster nothing): each change of
    the marker, and so when each revision went live."""

    _SET = re.compile(r'<cluster_property_set id="ha-gitops">(.*?)</cluster_property_set>', re.S)
    _NV = re.compile(r'name="ha-gitops-([a-z-]+)" value="([^"]*)"')

    def __init__(self, sb: Sandbox) -> None:
        super().__init__(daemon=True)
        self.files = {n: sb.layout.node_dir(n) / "var-lib-pacemaker" / "cib" / "cib.xml" for n in NODES}
        self.samples: list[sc.MarkerSample] = []
        self.stop = threading.Event()
        self._last: dict[str, tuple[Any, ...]] = {}
        self._stat: dict[str, tuple[float, int]] = {}

    def read(self, node: str) -> sc.MarkerSample | None:
        try:
            text = self.files[node].read_text()
        except OSError:
            return None
        m = self._SET.search(text)
        values = dict(self._NV.findall(m.group(1))) if m else {}
        return sc.MarkerSample(node=node, time=time.time(), revision=values.get("revision"),
                               kind=values.get("kind"), bad=values.get("bad"),
                               corosync_bad=values.get("corosync-bad"), event=values.get("event"))

    def run(self) -> None:
        while not self.stop.is_set():
            for node, path in self.files.items():
                try:
                    st = path.stat()
                except OSError:
                    continue
                if self._stat.get(node) == (st.st_mtime, st.st_size):
                    continue
                self._stat[node] = (st.st_mtime, st.st_size)
                s = self.read(node)
                if s is None:
                    continue
                key = (s.revision, s.kind, s.bad, s.corosync_bad, s.event)
                if self._last.get(node) != key:
                    self._last[node] = key
                    self.samples.append(s)
            time.sleep(0.05)


class Soak:
    def __init__(self, sb: Sandbox, repo: GitRepo, seed: int, minutes: float) -> None:
        self.sb, self.repo, self.seed, self.minutes = sb, repo, seed, minutes
        self.desired = Desired()
        self.pushes: list[sc.Push] = []
        self.hand_edits: list[sc.HandEdit] = []
        self.faults: list[sc.Fault] = []
        self.active: sc.Fault | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counter = 0
        self.notes: list[str] = []
        self.stickiness_id = "rsc-options-resource-stickiness"
        self.evidence_path = EVIDENCE / "evidence.json"
        self.name = "chaos_soak"  # bench/results/NAME.{json,md}

    # ------------------------------------------------------------------ helpers
    def unique(self, base: int) -> int:
        self.counter += 1
        return base + self.counter

    def pushed_at(self, fallback: float) -> float:
        ref = self.repo.path / ".git" / "refs" / "heads" / "main"
        try:
            return max(ref.stat().st_mtime, fallback)
        except OSError:
            return fallback

    def dc(self) -> str | None:
        for n in NODES:
            try:
                return self.sb.cluster(n).status().dc
            except HaGitopsError:
                continue
        return None

    # ------------------------------------------------------------------ pushes
    def push(self, kind: sc.PushKind, what: str, extra: str = "") -> None:
        t = time.time()
        sha = self.repo.commit(self.desired.files(extra), f"soak: {what}")
        self.pushes.append(sc.Push(sha=sha, kind=kind, what=what, pushed_at=self.pushed_at(t)))
        log(f"push {kind:8} {sha[:10]} {what}")

    def push_valid(self, rng: random.Random) -> None:
        r = rng.random()
        if r < 0.2 and len(self.desired.dummies) < 2:
            name = f"SOAK-D{self.unique(0)}"
            self.desired.dummies.append(name)
            self.push("valid", f"add Dummy {name}")
        elif r < 0.35 and self.desired.dummies:
            name = self.desired.dummies.pop(rng.randrange(len(self.desired.dummies)))
            self.push("valid", f"delete Dummy {name}")
        elif r < 0.65:
            self.desired.threshold = self.unique(1000)
            self.push("valid", f"IP-HA-01 migration-threshold={self.desired.threshold}")
        else:
            self.desired.stickiness = self.unique(1000)
            self.push("valid", f"resource-stickiness={self.desired.stickiness}")

    def push_invalid(self, rng: random.Random) -> None:
        n = self.unique(0)
        if rng.random() < 0.5:
            self.push("invalid", f"primitive SOAK-X{n} with a missing agent",
                      f"primitive SOAK-X{n} ocf:heartbeat:NoSuchAgent\n")
        else:
            self.push("invalid", f"colocation SOAK-C{n} naming a missing resource",
                      f"colocation SOAK-C{n} inf: NOPE{n} PROXY01\n")

    def push_bad(self) -> None:
        n = self.unique(0)
        self.push("bad", f"IPaddr2 SOAK-B{n} on a NIC that does not exist",
                  f"primitive SOAK-B{n} IPaddr2 params ip=10.220.1.{100 + n % 100} nic=nosuchnic0 "
                  "cidr_netmask=24 \\\n\top monitor interval=20s timeout=20s\n")

    def push_corosync(self) -> None:
        self.desired.token = 3250 if self.desired.token == 3000 else 3000
        self.push("corosync", f"totem.token {self.desired.token}")

    # ------------------------------------------------------------------ hand edits
    def hand_edit(self, rng: random.Random) -> None:
        with self.lock:
            busy = self.active.node if self.active else None
        node = rng.choice([n for n in NODES if n != busy])
        token = str(self.unique(50000))
        how = rng.choice(["crm_attribute", "crm", "cibadmin"])
        if how == "crm_attribute":
            argv = ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n", "resource-stickiness",
                    "-v", token]
        elif how == "crm":
            argv = ["crm", "resource", "meta", "IP-HA-01", "set", "migration-threshold", token]
        else:
            argv = ["cibadmin", "--modify", "--xml-text",
                    f'<nvpair id="{self.stickiness_id}" name="resource-stickiness" value="{token}"/>']
        t0 = time.time()
        try:
            r = self.sb.exec(node, argv, timeout=30)
            ok, err = r.returncode == 0, r.stderr.strip()[:200]
        except HaGitopsError as exc:
            ok, err = False, str(exc)[:200]
        self.hand_edits.append(sc.HandEdit(node=node, how=" ".join(argv), token=token, started=t0,
                                           ended=time.time(), ok=ok))
        log(f"hand edit on {node} via {how}: {token}" + ("" if ok else f" FAILED: {err}"))

    # ------------------------------------------------------------------ the two loops
    def workload(self) -> None:
        rng = random.Random(self.seed * 2 + 1)
        while not self.stop.is_set():
            self.stop.wait(rng.uniform(2, 6))
            if self.stop.is_set():
                break
            r = rng.random()
            try:
                if r < 0.40:
                    self.push_valid(rng)
                    self.stop.wait(2)
                elif r < 0.48:
                    self.push_invalid(rng)
                    self.stop.wait(2)
                elif r < 0.51:
                    self.push_bad()
                    self.stop.wait(2)
                elif r < 0.55:
                    self.push_corosync()
                    self.stop.wait(5)
                else:
                    self.hand_edit(rng)
                    # Left alone long enough to be seen as drift (a push right after would overwrite it).
                    self.stop.wait(4)
            except Exception as exc:
                self.notes.append(f"workload: {type(exc).__name__}: {exc}")
                log(f"workload error: {exc}")

    def inject(self, kind: str, node: str) -> None:
        if kind == "agent-kill":
            self.sb.kill(node, "agent")
        elif kind == "pacemaker-kill":
            self.sb.kill(node, "pacemaker")
        elif kind == "corosync-kill":
            self.sb.kill(node, "corosync")
        elif kind == "cut":
            self.sb.cut(node)
        elif kind == "poweroff":
            self.sb.poweroff(node)

    def heal(self, fault: sc.Fault) -> None:
        try:
            if fault.kind == "cut":
                self.sb.heal(fault.node)
            elif fault.kind in ("pacemaker-kill", "corosync-kill", "poweroff"):
                # Powers it on, or (already on: fenced and rebooted, or only its services dead) starts them.
                self.sb.start(fault.node)
        except HaGitopsError as exc:
            self.notes.append(f"heal of {fault.kind} on {fault.node}: {exc}")
        fault.healed = time.time()
        log(f"healed {fault.kind} of {fault.node}")

    def wait_whole(self, timeout: float = 240) -> None:
        try:
            self.sb.wait_healthy(timeout=timeout, expect_online=NODES)
        except HaGitopsError as exc:
            self.notes.append(f"cluster not whole {timeout:g}s after a heal: {exc}"[:400])
            log("cluster not whole after heal")

    def chaos(self) -> None:
        rng = random.Random(self.seed * 2 + 2)
        self.stop.wait(rng.uniform(5, 15))
        while not self.stop.is_set():
            kind = rng.choice(FAULTS)
            dc = self.dc()
            node = dc if dc and rng.random() < 0.5 else rng.choice(NODES)
            fault = sc.Fault(kind=kind, node=node, started=time.time())
            try:
                self.inject(kind, node)
            except HaGitopsError as exc:
                self.notes.append(f"inject {kind} on {node}: {exc}")
                self.stop.wait(5)
                continue
            with self.lock:
                self.active = fault
                self.faults.append(fault)
            log(f"FAULT {kind} on {node}" + (" (the DC)" if node == dc else ""))
            self.stop.wait(rng.uniform(10, 30) if kind != "agent-kill" else 8)
            self.heal(fault)
            self.wait_whole()
            with self.lock:
                self.active = None
            self.stop.wait(rng.uniform(5, 20))
        with self.lock:
            if self.active is not None and self.active.healed is None:
                self.heal(self.active)
            self.active = None

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        poller = MarkerPoller(self.sb)
        poller.start()
        r = self.sb.exec("kamailio01", ["cibadmin", "--query", "--xpath",
                                        "//rsc_defaults//nvpair[@name='resource-stickiness']"], timeout=30)
        m = re.search(r'id="([^"]+)"', r.stdout)
        if m:
            self.stickiness_id = m.group(1)
        start = time.time()
        threads = [threading.Thread(target=self.workload, daemon=True),
                   threading.Thread(target=self.chaos, daemon=True)]
        for t in threads:
            t.start()
        end = start + self.minutes * 60
        while time.time() < end:  # in slices: Ctrl-C (KeyboardInterrupt) still tears the sandbox down
            time.sleep(min(1.0, max(0.0, end - time.time())))
        self.stop.set()
        for t in threads:
            t.join(timeout=300)
        log("soak over: healing everything")
        for f in self.faults:
            if f.healed is None:
                self.heal(f)
        for n in NODES:  # whatever a fault left (a cut after a reboot, a node fencing left off)
            with contextlib.suppress(HaGitopsError):
                self.sb.heal(n)
        status = self.sb.status()
        for ns in status.nodes:
            if not ns.powered or not ns.corosync or not ns.pacemaker:
                try:
                    self.sb.start(ns.name)
                except HaGitopsError as exc:
                    self.notes.append(f"final start of {ns.name}: {exc}")
        healed = time.time()
        # A closing valid push: the head is a commit every node must converge to (not a refused one).
        self.desired.stickiness = self.unique(1000)
        self.push("valid", f"closing push: resource-stickiness={self.desired.stickiness}")
        self.wait_whole(300)
        converged_at = self.wait_converged(poller, deadline=healed + 600)
        time.sleep(5)  # observers record the last writes
        poller.stop.set()
        poller.join(timeout=5)
        evidence = self.collect(poller, converged_at is not None).model_copy(
            update={"start": start, "healed": healed, "converged_at": converged_at, "seed": self.seed,
                    "minutes": self.minutes})
        EVIDENCE.mkdir(parents=True, exist_ok=True)
        (EVIDENCE / "evidence.json").write_text(evidence.model_dump_json(indent=1))
        return self.report(evidence)

    def cheap_converged(self, poller: MarkerPoller) -> bool:
        head = self.repo.head()
        coro = self.desired.files()[f"{FOLDER}/corosync.conf"]
        for n in NODES:
            s = poller.read(n)
            if s is None or s.revision != head:
                return False
            conf = self.sb.layout.node_dir(n) / "etc-corosync" / "corosync.conf"
            try:
                if conf.read_text() != coro:
                    return False
            except OSError:
                return False
        return True

    def plan_exit(self, node: str) -> tuple[int | None, str]:
        try:
            r = self.sb.exec(node, [*HA_GITOPS, "plan", "--config", AGENT_TOML], timeout=240)
            return r.returncode, r.stdout + r.stderr
        except HaGitopsError as exc:
            return None, str(exc)

    def wait_converged(self, poller: MarkerPoller, deadline: float) -> float | None:
        while time.time() < deadline:
            if self.cheap_converged(poller):
                at = time.time()
                if all(self.plan_exit(n)[0] == 0 for n in NODES):
                    log(f"converged ({at:.1f})")
                    return at
            time.sleep(1)
        log("NOT converged within the bound")
        return None

    # ------------------------------------------------------------------ evidence
    def collect(self, poller: MarkerPoller, converged: bool) -> sc.Evidence:
        year = time.gmtime().tm_year
        writes: list[sc.CibWrite] = []
        quorum: list[sc.QuorumChange] = []
        exits: list[sc.AgentExit] = []
        events: list[sc.Event] = []
        finals: list[sc.NodeFinal] = []
        status = {n.name: n for n in self.sb.status().nodes}
        head = self.repo.head()
        coro = self.desired.files()[f"{FOLDER}/corosync.conf"]
        for n in NODES:
            d = self.sb.layout.node_dir(n)
            w, q = sc.parse_pacemaker_log(n, (d / "var-log-pacemaker" / "pacemaker.log").read_text(
                errors="replace"), year)
            writes += w
            quorum += q
            exits += sc.parse_agent_log(n, (d / "logs" / "agent.out").read_text(errors="replace"))
            try:
                r = self.sb.exec(n, [*HA_GITOPS, "audit", "log", "--limit", "1000000", "--format", "json"],
                                 timeout=300)
                if r.returncode == 0:
                    events += sc.parse_events(n, json.loads(r.stdout))
                else:
                    self.notes.append(f"audit log on {n}: {r.stderr.strip()[:300]}")
                v = self.sb.exec(n, [*HA_GITOPS, "audit", "verify", "--format", "json"], timeout=300)
                verify_ok, verify_out = v.returncode == 0, v.stdout + v.stderr
            except HaGitopsError as exc:
                verify_ok, verify_out = False, str(exc)
            checked = None
            with contextlib.suppress(ValueError):
                checked = json.loads(verify_out).get("checked")
            plan_code, plan_out = self.plan_exit(n)
            s = poller.read(n)
            try:
                coro_ok = (d / "etc-corosync" / "corosync.conf").read_text() == coro
            except OSError:
                coro_ok = False
            finals.append(sc.NodeFinal(
                node=n, marker_revision=s.revision if s else None, marker_bad=s.bad if s else None,
                plan_exit=plan_code, plan_out=plan_out[-2000:], corosync_matches=coro_ok,
                audit_verify_ok=verify_ok, audit_verify_out=verify_out[-2000:],
                audit_checked=checked, agent_running=status[n].agent,
                agent_restarts=status[n].agent_restarts))
        for p in self.pushes:
            p.live_at = next((s.time for s in poller.samples if s.revision == p.sha), None)
        order = self.repo.git("rev-list", "--reverse", "HEAD").split()
        return sc.Evidence(head=head, git_order=order, pushes=self.pushes, hand_edits=self.hand_edits,
                           faults=self.faults, writes=writes, quorum=quorum, events=events,
                           markers=poller.samples, agent_exits=exits, final=finals, converged=converged)

    # ------------------------------------------------------------------ the table
    def report(self, ev: sc.Evidence) -> dict[str, Any]:
        start, healed, converged_at = ev.start, ev.healed, ev.converged_at
        verdicts = sc.check(ev, start)
        rollbacks = sc.auto_rollbacks(ev, start)
        kinds: dict[str, int] = {}
        for p in ev.pushes:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        faults: dict[str, int] = {}
        for f in ev.faults:
            faults[f.kind] = faults.get(f.kind, 0) + 1
        latency = [p.live_at - p.pushed_at for p in ev.pushes if p.kind == "valid" and p.live_at is not None]
        # A valid push never live: superseded (the next push came before any pass took it) or lost.
        not_live = []
        for i, p in enumerate(ev.pushes):
            if p.kind == "valid" and p.live_at is None:
                nxt = ev.pushes[i + 1] if i + 1 < len(ev.pushes) else None
                not_live.append(f"{p.sha[:12]} at t+{p.pushed_at - start:.1f}s ({p.what}): "
                                + (f"next push {nxt.pushed_at - p.pushed_at:.1f}s later" if nxt else "last")
                                + f"; {sc.near_fault(ev.faults, p.pushed_at)}")
        # Pushes with no fault active from 10 s before the push until live: the undisturbed path.
        quiet = [p.live_at - p.pushed_at for p in ev.pushes if p.kind == "valid" and p.live_at is not None
                 and not any(f.started <= p.live_at and p.pushed_at - 10 <= (f.healed or healed)
                             for f in ev.faults)]
        edits_ok = sum(1 for h in ev.hand_edits if h.ok)
        skipped = [e for e in ev.events if e.kind == "error" and e.details.get("skipped")]
        refused = {e.sha for e in ev.events if e.kind == "refused" and e.sha}
        result: dict[str, Any] = {
            "measured_at": now(), "seed": self.seed, "minutes": self.minutes,
            "duration_seconds": round(healed - start, 1),
            "pushes": kinds, "pushes_total": len(ev.pushes),
            "invalid_refused": sum(1 for p in ev.pushes if p.kind == "invalid" and p.sha in refused),
            "hand_edits": {"made": edits_ok, "failed": len(ev.hand_edits) - edits_ok},
            "faults": faults, "faults_total": len(ev.faults),
            "auto_rollbacks": rollbacks,
            # The writer's own record of each skip (observers do not copy error events).
        "writes_skipped_by_the_guard": sum(1 for e in skipped if e.trail == e.node),
            "convergence_seconds_after_heal": round(converged_at - healed, 1) if converged_at else None,
            "apply_latency_seconds": {"median": round(statistics.median(latency), 2),
                                      "max": round(max(latency), 2), "n": len(latency)} if latency else None,
            "apply_latency_quiet_seconds": {"median": round(statistics.median(quiet), 2),
                                            "max": round(max(quiet), 2), "n": len(quiet)} if quiet else None,
            "valid_pushes_never_live": not_live,
            "agents": {n.node: {"running": n.agent_running, "restarts": n.agent_restarts} for n in ev.final},
            "agent_exits": [x.line for x in ev.agent_exits],
            "fault_timeline": [{"kind": f.kind, "node": f.node, "at": round(f.started - start, 1),
                                "healed_at": round(f.healed - start, 1) if f.healed else None}
                               for f in ev.faults],
            "invariants": [v.model_dump() for v in verdicts],
            "cib_writes_seen_in_logs": len(ev.writes), "audit_events": len(ev.events),
            "notes": self.notes,
            "evidence": str(self.evidence_path), "logs": f"{STATE}/nodes/*/",
        }
        write(self.name, result, markdown(result))
        return result


def markdown(r: dict[str, Any]) -> str:
    lat = r["apply_latency_seconds"] or {}
    quiet = r["apply_latency_quiet_seconds"] or {}
    rows = [
        ("duration", f"{r['duration_seconds']} s of chaos ({r['minutes']} min, seed {r['seed']})"),
        ("pushes", f"{r['pushes_total']}: " + ", ".join(f"{k} {v}" for k, v in sorted(r["pushes"].items()))
         + f" (invalid refused in a trail: {r['invalid_refused']})"),
        ("hand edits", f"{r['hand_edits']['made']} (failed commands: {r['hand_edits']['failed']})"),
        ("faults", f"{r['faults_total']}: " + ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))),
        ("auto-rollbacks", str(len(r["auto_rollbacks"]))),
        ("writes the guard skipped (LostQuorum/NotWriter)", str(r["writes_skipped_by_the_guard"])),
        ("convergence after the heal", f"{r['convergence_seconds_after_heal']} s"),
        ("apply latency (push to live, valid CIB pushes)",
         f"median {lat.get('median')} s, max {lat.get('max')} s (n={lat.get('n')}; "
         f"never live: {len(r['valid_pushes_never_live'])})"),
        ("apply latency, no fault from 10 s before the push until live",
         f"median {quiet.get('median')} s, max {quiet.get('max')} s (n={quiet.get('n')})"),
        ("agents at the end (restarts since boot)", ", ".join(
            f"{n} {'up' if a['running'] else 'DOWN'} ({a['restarts']})" for n, a in r["agents"].items())
         + f"; exits seen: {len(r['agent_exits'])}"),
    ]
    out = ["# Chaos soak\n", "| measure | value |", "|---|---|"]
    out += [f"| {a} | {b} |" for a, b in rows]
    out += ["", "| invariant | verdict | evidence checked | violations |", "|---|---|---|---|"]
    out += [f"| {v['name']} | {'PASS' if v['ok'] else 'FAIL'} | {v['checked']} | {len(v['violations'])} |"
            for v in r["invariants"]]
    if r["auto_rollbacks"]:
        out += ["", "Auto-rollbacks:", "", "| at | event | what | revision | push | why | nearest fault |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| t+{a['at']}s | {a['event']} | {a['what']} | {a['revision']} | {a['push']} | "
                f"{a['why'].replace('|', '/')} | {a['fault']} |" for a in r["auto_rollbacks"]]
    for v in r["invariants"]:
        if v["violations"]:
            out += ["", f"**{v['name']}**: FAIL", ""]
            out += [f"- {x}" for x in v["violations"][:40]]
            if len(v["violations"]) > 40:
                out.append(f"- ... {len(v['violations']) - 40} more in chaos_soak.json")
    if r["notes"]:
        out += ["", "Notes:", ""] + [f"- {n}" for n in r["notes"]]
    out += ["", f"{r['measured_at']}, 2-core machine. Evidence: {r['evidence']}; logs: {r['logs']}. "
            "Every verdict is read from the cluster's evidence (pacemaker.log CIB writes and quorum lines, "
            "each node's CIB marker on disk every 50 ms, the audit trails, `plan`, `audit verify`, "
            "`sandbox status`), never from what the soak believes it did.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recheck", type=Path, metavar="EVIDENCE",
                    help="judge a saved evidence.json again (no sandbox) and rewrite the results")
    ap.add_argument("--name", default="chaos_soak", help="with --recheck: bench/results/NAME.{json,md}")
    ap.add_argument("--logs", type=Path, metavar="NODES_DIR",
                    help="with --recheck: parse the pacemaker and agent logs again from NODES_DIR/NODE/")
    args = ap.parse_args()
    if args.recheck:
        ev = sc.Evidence.model_validate_json(args.recheck.read_text())
        if args.logs:
            year = time.gmtime(ev.start).tm_year
            writes, quorum, exits = [], [], []
            for n in NODES:
                w, q = sc.parse_pacemaker_log(n, (args.logs / n / "var-log-pacemaker" / "pacemaker.log")
                                              .read_text(errors="replace"), year)
                writes += w
                quorum += q
                exits += sc.parse_agent_log(n, (args.logs / n / "logs" / "agent.out").read_text(
                    errors="replace"))
            ev = ev.model_copy(update={"writes": writes, "quorum": quorum, "agent_exits": exits})
        soak = Soak(None, None, ev.seed, ev.minutes)  # no cluster needed to judge
        soak.evidence_path, soak.name = args.recheck, args.name
        result = soak.report(ev)
        print(markdown(result))
        return
    shutil.rmtree(REPO, ignore_errors=True)
    shutil.rmtree(EVIDENCE, ignore_errors=True)
    desired = Desired()
    repo = GitRepo.create(REPO, {**{f"{FOLDER}/{p.name}": p.read_text()
                                    for p in (REPO_ROOT / "desired" / "kamailio").iterdir() if p.is_file()},
                                 **desired.files()}, "initial")
    sb = Sandbox(STATE)
    sb.down()
    # Agents as the agent tests run them (poll 5 s, drift debounce 0.2 s), following a file:// repository.
    sb.up(REPO_ROOT / "desired" / "kamailio", timeout=90,
          agents=SandboxAgents(repo_url=f"file://{REPO}", path=FOLDER, poll_interval=5.0, drift_debounce=0.2))
    try:
        deadline = time.time() + 120
        head = repo.head()
        cib = sb.layout.node_dir("kamailio01") / "var-lib-pacemaker" / "cib" / "cib.xml"
        while head not in (cib.read_text() if cib.exists() else ""):
            if time.time() > deadline:
                raise RuntimeError("initial sync never happened")
            time.sleep(0.2)
        sb.exec("kamailio01", ["crm_resource", "--wait", "--timeout=60s"], timeout=90)
        log(f"initial sync {head[:10]}; soaking {args.minutes} min, seed {args.seed}")
        result = Soak(sb, repo, args.seed, args.minutes).run()
    finally:
        sb.down(keep_logs=True)
    print(json.dumps({k: result[k] for k in ("pushes", "faults", "hand_edits", "auto_rollbacks",
                                             "convergence_seconds_after_heal", "apply_latency_seconds")},
                     indent=1))
    for v in result["invariants"]:
        print(f"{'PASS' if v['ok'] else 'FAIL'} {v['name']} ({v['checked']} checked, "
              f"{len(v['violations'])} violations)")


if __name__ == "__main__":
    main()
