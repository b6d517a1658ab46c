"""`ha-gitops preview`: a revision applied through the real agent path, on a sandbox copy of the cluster.

A private state directory holds everything: a git repository with the base committed, a sandbox whose
agents follow it (their initial sync is the base), the head's folder for `plan`. Then the head is committed,
the agents apply it (write, verify, auto-rollback, the corosync.conf rollout), and what they did is read
from every node's audit trail, `crm_mon` and the fencing history. The sandbox is torn down and the
directory removed whatever happens; `controller.preview.build_report` judges what was seen.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.audit.store import AuditStore
from controller.cib.marker import read_marker
from controller.cluster.fencing import FenceEvent, fence_history
from controller.decide import Decision
from controller.env_names import CRM_CACHE_ENV
from controller.errors import HaGitopsError
from controller.observed import ClusterStatus
from controller.preview import Fence, Observation, PreviewEvent, PreviewReport, build_report
from controller.sandbox.manager import Sandbox, _pid_alive
from controller.sandbox.topology import SandboxAgents
from controller.secrets.preview import PreviewSecrets, preview_values, uses_secrets
from controller.source.local import PrivateRepo

FOLDER = "cluster"  # the desired folder inside the preview's repository
DEFAULT_PARENT = Path("/var/lib")  # not /tmp, /run or /dev/shm: private inside the sandbox nodes
# A pass that ended with one of these (agent-status) has carried the revision out: written and verified,
# refused, rolled back. `error` is retried by the agent, so it is final only when time runs out.
# How long the base may stay refused on the fresh sandbox before that is taken as the base's own verdict.
BASE_HELD_FOR = 45.0
FINAL = {"applied", "no-change", "refused", "rolled-back", "bad-revision", "waiting-for-adopt"}


class PreviewError(HaGitopsError):
    pass


class _Trails:
    """Every node's audit trail, read from the host (the nodes' /var/lib/ha-gitops is a directory of the
    sandbox state); each opened once, when its agent has made it."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.nodes = [n.name for n in sb.spec().nodes]
        self.since: dict[str, int] = {}
        self._stores: dict[str, AuditStore] = {}

    def store(self, node: str) -> AuditStore | None:
        if node not in self._stores:
            db = self.sb.layout.node_dir(node) / "var-lib-ha-gitops" / "audit.db"
            if not db.exists() or db.stat().st_size == 0:
                return None  # its agent has not made it yet (and preview never migrates one)
            try:
                self._stores[node] = AuditStore(f"sqlite:///{db}", create=False)
            except HaGitopsError:
                return None
        return self._stores[node]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    def mark(self) -> None:
        """Events from now on are the head's."""
        for node in self.nodes:
            store = self.store(node)
            last = store.last() if store is not None else None
            self.since[node] = last.id if last else 0

    def status(self, node: str) -> dict[str, Any]:
        store = self.store(node)
        found = store.get_state("agent-status", scope=node) if store is not None else None
        return found if isinstance(found, dict) else {}

    def last_refusal(self, node: str) -> str | None:
        """What the node's last refusal said in full (the policy's violations, the invalid lines)."""
        store = self.store(node)
        last = store.last(kind="refused") if store is not None else None
        return (last.error or last.summary) if last is not None else None

    def events(self, first: str | None) -> list[PreviewEvent]:
        """Every node's events since mark(), once per cluster-wide event id (the DC's record first)."""
        seen: set[str] = set()
        out: list[PreviewEvent] = []
        for node in sorted(self.nodes, key=lambda n: n != first):
            store = self.store(node)
            if store is None:
                continue
            for e in store.list(limit=None, newest_first=False):
                if e.id <= self.since.get(node, 0) or (e.event_id and e.event_id in seen):
                    continue
                if e.event_id:
                    seen.add(e.event_id)
                out.append(PreviewEvent(id=e.id, event_id=e.event_id, node=e.node, kind=e.kind,
                                        outcome=e.outcome, time=e.time, summary=e.summary or "",
                                        commit=e.commit.sha if e.commit else None, details=dict(e.details)))
        return sorted(out, key=lambda e: e.time)


def _status(sb: Sandbox) -> ClusterStatus:
    """The cluster as the first node that answers sees it (a node may be down: a change can fence)."""
    last: HaGitopsError | None = None
    for node in (n.name for n in sb.spec().nodes):
        try:
            st = sb.cluster(node).status()
        except HaGitopsError as exc:
            last = exc
            continue
        if st.dc:
            return st
    raise PreviewError(f"the sandbox has no DC ({last})" if last else "the sandbox has no DC")


def _dc(sb: Sandbox) -> str:
    dc = _status(sb).dc
    assert dc is not None
    return dc


def _wait(what: str, timeout: float, probe: Callable[[], Any], interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise PreviewError(f"timed out after {timeout:g}s waiting for {what}")


def _fences(sb: Sandbox, dc: str) -> list[FenceEvent]:
    return fence_history(sb.runner(dc)) or []


def _fit_secrets(root: Path, base_files: dict[str, str], head_files: dict[str, str],
                 identity: Path | None) -> tuple[dict[str, str], dict[str, str], PreviewSecrets, Path | None]:
    """Both sides' secrets.age encrypted to age identities made here for the preview's nodes (real values
    with `identity`, else placeholders: controller/secrets/preview.py); the identities' directory."""
    from controller.sandbox.topology import build_spec
    from controller.secrets import age
    from controller.secrets.folder import decrypt_text
    from controller.secrets.model import SECRETS_FILE, render_plaintext

    if not (uses_secrets(base_files) or uses_secrets(head_files)):
        return base_files, head_files, PreviewSecrets(), None
    spec_dir = root / "base-folder"
    spec_dir.mkdir()
    for name, text in base_files.items():
        (spec_dir / name).write_text(text)
    keys = root / "age"
    recipients = [age.keygen(keys / f"{n.name}.key") for n in build_spec(spec_dir).nodes]
    names: set[str] = set()

    def fit(label: str, files: dict[str, str]) -> dict[str, str]:
        if SECRETS_FILE not in files:
            return files  # references without the file: the agents refuse it, as they would on the cluster
        decrypted = decrypt_text(files[SECRETS_FILE], identity, source=f"{label}: {SECRETS_FILE}") \
            if identity is not None else None
        values = preview_values(files, decrypted)
        names.update(values)
        return {**files, SECRETS_FILE: age.encrypt(render_plaintext(values), recipients)}

    base_fit, head_fit = fit("base", base_files), fit("head", head_files)
    secrets = PreviewSecrets(mode="real" if identity is not None else "placeholder", names=sorted(names))
    return base_fit, head_fit, secrets, keys


def run_preview(base: str, head: str, base_files: dict[str, str], head_files: dict[str, str], *,
                state_dir: Path | None = None, timeout: float = 300, snapshot: str | None = None,
                identity: Path | None = None,
                say: Callable[[str], None] = lambda _t: None) -> PreviewReport:
    """Bring a sandbox up on `base_files`, apply `head_files` through its agents, report; nothing is left
    behind (the state directory is removed)."""
    if state_dir is None:
        root = Path(tempfile.mkdtemp(prefix="ha-gitops-preview-", dir=DEFAULT_PARENT))
    else:
        root = state_dir.resolve()
        if root.exists() and any(root.iterdir()):
            raise PreviewError(f"{root} is not empty: preview makes its own state directory")
        root.mkdir(parents=True, exist_ok=True)
    for private in ("/tmp", "/run", "/dev/shm"):
        if root.is_relative_to(private):
            shutil.rmtree(root, ignore_errors=True)
            raise PreviewError(f"{root} is under {private}, which is private inside the sandbox nodes")
    started = time.monotonic()
    timings: dict[str, float] = {}
    sb = Sandbox(root / "sandbox")
    # crmsh's conversion cache (the agents' and plan's inside the nodes, which see the host's /var/cache)
    # goes in the private directory too, unless the caller chose one.
    own_cache = CRM_CACHE_ENV not in os.environ
    if own_cache:
        os.environ[CRM_CACHE_ENV] = str(root / "crm-cache")
    try:
        base_files, head_files, secrets, keys = _fit_secrets(root, base_files, head_files, identity)
        if secrets.note():
            say(f"preview: {secrets.note()}")
        plan, obs = _run(sb, root, base, head, base_files, head_files, timeout, timings, say, keys)
    except HaGitopsError as exc:
        # The sandbox and its logs go with the teardown: what the agents said comes along in the error.
        raise PreviewError(f"{exc}\n{_agent_log_tails(sb)}") from exc
    finally:
        left = _teardown(sb, root, timings, say)
        if own_cache:
            os.environ.pop(CRM_CACHE_ENV, None)
    obs.leftovers, obs.snapshot, obs.secrets = left, snapshot, secrets
    timings["total"] = round(time.monotonic() - started, 2)
    obs.timings = timings
    return build_report(plan, obs)


def _run(sb: Sandbox, root: Path, base: str, head: str, base_files: dict[str, str],
         head_files: dict[str, str], timeout: float, timings: dict[str, float],
         say: Callable[[str], None], age_keys: Path | None) -> tuple[Decision, Observation]:
    repo = PrivateRepo(root / "repo")
    base_sha = repo.commit(FOLDER, base_files, f"preview base: {base}")
    head_dir = root / "head"
    head_dir.mkdir()
    for name, text in head_files.items():
        (head_dir / name).write_text(text)

    t = time.monotonic()
    say(f"preview: sandbox up on {base} in {root}")
    sb.up(repo.path / FOLDER, timeout=90, agents=SandboxAgents(repo_url=str(repo.path), path=FOLDER,
                                                               poll_interval=5.0, drift_debounce=0.2,
                                                               age_identity_dir=str(age_keys) if age_keys
                                                               else None))
    timings["sandbox_up"] = round(time.monotonic() - t, 2)
    trails = _Trails(sb)
    try:
        t = time.monotonic()

        held_since: list[float] = []

        def base_done() -> str | None:
            try:
                dc = _dc(sb)
            except HaGitopsError:  # an election, a node still starting: ask again
                return None
            st = trails.status(dc)
            outcome = st.get("outcome")
            if st.get("leader") is not True or st.get("revision") != base_sha or outcome not in FINAL:
                return None
            if outcome not in ("applied", "no-change"):
                # A refusal while the fresh cluster is still starting (a node not yet joined makes its
                # start look like fencing) is retried by the agents on the next cluster change: only
                # one that lasts is the base's own.
                held_since[:1] = held_since[:1] or [time.monotonic()]
                if time.monotonic() - held_since[0] < BASE_HELD_FOR:
                    return None
                raise PreviewError(f"the base itself does not apply on the sandbox ({outcome} for "
                                   f"{BASE_HELD_FOR:g}s): {trails.last_refusal(dc) or st.get('message')}")
            held_since.clear()
            try:
                if read_marker(sb.cluster(dc).read_cib()).revision != base_sha:
                    return None
            except HaGitopsError:
                return None
            return dc

        dc = _wait("the agents' initial sync of the base", 180, base_done)
        sb.cluster(dc).wait_settled(120)
        before = sb.cluster(dc).status()
        timings["initial_sync"] = round(time.monotonic() - t, 2)

        t = time.monotonic()
        say(f"preview: plan of {head} on {dc}")
        plan = _plan(sb, dc, head_dir)
        timings["plan"] = round(time.monotonic() - t, 2)

        trails.mark()
        fences_before = {f.key() for f in _fences(sb, dc)}
        obs = Observation(base=base, head=head, base_revision=base_sha, head_revision=base_sha, dc=dc,
                          before=before)
        if plan.verdict == "no-change" and not plan.plan.changed:
            say("preview: the plan says no change; nothing to commit")
        else:
            committed_at = datetime.now(UTC)
            head_sha = repo.commit(FOLDER, head_files, f"preview head: {head}")
            obs.head_revision, obs.committed_at = head_sha, committed_at
            t = time.monotonic()
            say(f"preview: head committed ({head_sha[:12]}); waiting for the agents' verdict")
            obs.samples, obs.timed_out = _watch(sb, trails, head_sha, plan, timeout)
            timings["commit_to_verdict"] = round(time.monotonic() - t, 2)
            dc = _dc(sb)
            sb.cluster(dc).wait_settled(60)
        obs.dc = dc
        obs.after = sb.cluster(dc).status()
        obs.events = trails.events(dc)
        obs.fences = [Fence(target=f.target, action=f.action, status=f.status, text=f.text())
                      for f in _fences(sb, dc) if f.key() not in fences_before]
        obs.crm_mon = sb.cluster(dc).status_text()
        return plan, obs
    finally:
        trails.close()


def _plan(sb: Sandbox, dc: str, head_dir: Path) -> Decision:
    """`ha-gitops plan --dir HEAD` on the DC, with its agent's configuration: what the agent will decide."""
    r = sb.exec(dc, [sys.executable, "-m", "controller.cli", "plan", "--config", "/etc/ha-gitops/agent.toml",
                     "--dir", str(head_dir), "--format", "json"], timeout=300)
    if r.returncode not in (0, 1, 3):
        raise PreviewError(f"plan of the head on the sandbox failed (exit {r.returncode}): "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return Decision.model_validate(json.loads(r.stdout))


def _watch(sb: Sandbox, trails: _Trails, head_sha: str, plan: Decision, timeout: float
           ) -> tuple[list[ClusterStatus], bool]:
    """Sample the cluster until the writer's pass on the head is over (and, with a corosync.conf change, its
    rollout): the samples, and whether time ran out first."""
    samples: list[ClusterStatus] = []
    deadline = time.monotonic() + timeout
    rollout = bool(plan.plan.corosync_changes) and plan.verdict != "refuse"
    while time.monotonic() < deadline:
        try:
            sample = _status(sb)
        except HaGitopsError:
            time.sleep(0.5)
            continue
        samples.append(sample)
        # The writer's pass (observers say no-change as soon as the marker names the head, before verify).
        statuses = [trails.status(n) for n in trails.nodes]
        done = [s for s in statuses if s.get("leader") is True and s.get("revision") == head_sha
                and s.get("outcome") in FINAL]
        if done and (not rollout or done[0]["outcome"] in ("refused", "rolled-back", "bad-revision")
                     or _rollout_over(trails, sample.dc, head_sha)):
            return samples, False
        time.sleep(0.3)
    return samples, True


def _rollout_over(trails: _Trails, dc: str | None, head_sha: str) -> bool:
    for e in trails.events(dc):
        if e.details.get("revision") != head_sha and e.details.get("bad_revision") != head_sha:
            continue
        if (e.kind == "rollout-step" and e.details.get("step") == "healthy") or e.kind == "auto-rollback" \
                or e.kind == "refused":
            return True
    return False


def _agent_log_tails(sb: Sandbox, lines: int = 15) -> str:
    out = []
    for node in sb.layout.nodes_dir.glob("*"):
        log = node / "logs" / "agent.out"
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        out.append(f"--- {node.name} agent log (last {len(tail)} lines):\n" + "\n".join(tail))
    return "\n".join(out) or "(no agent logs)"


def _teardown(sb: Sandbox, root: Path, timings: dict[str, float], say: Callable[[str], None]
              ) -> dict[str, list[str]]:
    """Down, the state directory removed; what is still there (nothing, or the report says so)."""
    t = time.monotonic()
    try:
        pids = [int(p) for p in sb.leftovers()["processes"]]
    except (HaGitopsError, OSError, ValueError):
        pids = []
    sb.down()
    left = sb.leftovers()
    left["processes"] = [str(p) for p in pids if _pid_alive(p)]
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        left["files"] = [str(root)]
    timings["teardown"] = round(time.monotonic() - t, 2)
    say(f"preview: sandbox down in {timings['teardown']:.1f}s")
    return {k: v for k, v in left.items() if v}
