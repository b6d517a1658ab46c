"""The long-running service: triggers (git poll, push watch, CIB watch) -> one serial reconcile loop.

Triggers only set a flag; one worker thread runs passes one at a time, so a burst of pushes or CIB
writes is one pass, and no two passes ever race each other on this node.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from controller.audit.models import NewEvent
from controller.audit.store import AuditError, AuditStore
from controller.cluster.adapter import LiveCluster
from controller.desired.crm import crm_to_configuration
from controller.desired.crm_worker import WarmCrm
from controller.errors import HaGitopsError, InputError
from controller.notifications import route
from controller.reconcile import DesiredInput, PassResult
from controller.sd_notify import Notifier
from controller.service.metrics import AgentMetrics
from controller.settings import AgentSettings
from controller.source.decisions import redact_url
from controller.source.git import GitSource
from controller.source.models import SourceConfig, SyncResult
from controller.stages import StageTimer
from controller.wiring import build_reconciler

if TYPE_CHECKING:
    from controller.notify_send import Sender
    from controller.service.http import AgentHTTP

log = logging.getLogger("ha-gitops.agent")

CIB_DIR = Path("/var/lib/pacemaker/cib")
STATUS_KEY = "agent-status"
# Non-DC agents look at a push this much after the last of a series of pushes: the DC's pass (fetch, crm
# conversion, simulation, write) must not share the CPU with two observers doing the same conversion.
OBSERVE_DELAY = 2.5
RECHECK_INTERVAL = 5.0  # seconds between passes while an inconclusive verify waits for a whole cluster
OBSERVER_NICE = 10  # CPU priority of an observer's passes and crm conversions: the DC's pass goes first
MAX_PASS = 900.0  # seconds one pass may take (settle timeouts, a node-by-node rollout) before we are stuck
AUDIT_VERIFY_INTERVAL = 3600.0  # seconds between two verifies of the whole audit chain (for /metrics)
# Reasons whose pass fetches; "poll" alone first asks the remote whether the branch moved (ls-remote).
FETCH_REASONS = frozenset({"start", "poll", "push", "webhook", "push-observe", "manual", "retry"})
PUSH_REASONS = frozenset({"push", "webhook"})  # a push seen locally or announced by the forge


class Agent:
    def __init__(self, settings: AgentSettings, *, cluster: LiveCluster | None = None,
                 notifier: Notifier | None = None, cib_dir: Path = CIB_DIR) -> None:
        self.settings = settings
        self.cluster = cluster or LiveCluster()
        self.notifier = notifier or Notifier()
        self.cib_dir = cib_dir
        self.store = AuditStore(settings.audit_url)
        self.source = GitSource(SourceConfig.from_settings(settings))
        self.metrics = AgentMetrics(node=settings.node_name, branch=settings.branch,
                                    repo=redact_url(settings.repo_url or ""))
        # crm syntax is converted by a warm crmsh (controller/desired/crm_worker.py) where this agent keeps
        # one (settings.warm_crm): about half the cost of a new crm process. It matters on the DC, where a
        # push waits for the conversion.
        # Closed until this agent is the writer (or warm_crm = "always"): conversions meanwhile run as new
        # crm processes, which inherit the CPU priority of the pass.
        self.crm = WarmCrm(autostart=False) if settings.warm_crm != "off" else None
        self.reconciler = build_reconciler(
            settings, cluster=self.cluster, store=self.store, rollout=True, wake=self.trigger,
            crm=self.crm.run if self.crm else None,
            observer_crm=functools.partial(self.crm.run, nice=OBSERVER_NICE) if self.crm else None)
        self.reconciler.on_observed = self._on_observed
        # Notifications: a sender thread with its own connection to the trail; an append that queues one
        # wakes it, and a pass never waits for a delivery.
        self.sender: Sender | None = None
        if settings.notify:
            from controller.notify_send import Sender

            self.sender = Sender(AuditStore(settings.audit_url), settings.notify, node=settings.node_name,
                                 cluster=self._cluster_name())
            self.store.on_outbox = self.sender.wake
        # A node that has just become the DC fetches before it writes: the old DC may have died with a
        # push this node had not fetched yet (it would write an older revision).
        self.reconciler.refresh_source = lambda: self.desired_input(True)
        self.work_dir = settings.cache_dir.parent / "work"
        self._wake = threading.Event()
        self._reasons: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_sync: SyncResult | None = None
        self._exported: dict[str, Path] = {}
        self._stoppers: list[Any] = []
        self._source_trigger: Any = None
        self._last: PassResult | None = None
        self._beat = time.monotonic()
        self._observe_timer: threading.Timer | None = None
        self._failure: dict[str, Any] | None = None
        self._push_pending = False  # a push seen but not fetched yet (an observer looks later)
        self._errors = RepeatedErrors(log)
        self._publish_errors = RepeatedErrors(log)
        self._recheck_timer: threading.Timer | None = None
        self.http: AgentHTTP | None = None  # the HTTP listener, once started

    def _cluster_name(self) -> str:
        """How notifications name the cluster: corosync's totem.cluster_name on this node."""
        from controller.corosync.model import load_corosync

        try:
            text = self.cluster.read_file(self.reconciler.corosync_path)
            name = load_corosync(text, source=self.reconciler.corosync_path)[1].totem.cluster_name \
                if text else None
        except (HaGitopsError, ValueError) as exc:
            log.debug("cluster name for notifications: %s", exc)
            name = None
        return name or "cluster"

    # ------------------------------------------------------------------ triggers
    def trigger(self, reason: str) -> None:
        with self._lock:
            self._reasons.add(reason)
        self._wake.set()

    def _later(self, reason: str, seconds: float) -> threading.Timer:
        t = threading.Timer(seconds, self.trigger, args=(reason,))
        t.daemon = True
        t.start()
        return t

    def _recheck_timer_due(self) -> bool:
        if self._recheck_timer is not None and self._recheck_timer.is_alive():
            return False
        return self.reconciler.pending_check is not None

    def _observe_later(self) -> None:
        """Look at pushes OBSERVE_DELAY after the last one: a series of pushes is one observer pass."""
        if self._observe_timer is not None:
            self._observe_timer.cancel()
        self._observe_timer = self._later("push-observe", OBSERVE_DELAY)

    def _take(self) -> set[str]:
        with self._lock:
            reasons, self._reasons = self._reasons, set()
        self._wake.clear()
        return reasons

    # ------------------------------------------------------------------ one iteration
    def desired_input(self, fetch: bool, timer: StageTimer | None = None, *,
                      cheap: bool = False) -> DesiredInput | None:
        """The revision a pass works from; `fetch` syncs the source first (`cheap`: only when the remote
        branch moved)."""
        timer = timer or StageTimer()
        if fetch or self._last_sync is None:
            with timer.stage("fetch"):
                self._last_sync = self.source.sync(cheap=cheap and self._last_sync is not None)
            self.metrics.observe_sync(self._last_sync)
            if self._last_sync.error:
                log.warning("git source: %s (retry in %ss)", self._last_sync.error, self._last_sync.retry_in)
                if self._source_trigger is not None and self._last_sync.retry_in is not None:
                    self._source_trigger.retry_in(self._last_sync.retry_in)
        sync = self._last_sync
        rev = sync.revision
        if rev is None:
            return None
        folder = self._exported.get(rev.sha)
        if folder is None:
            dest = self.work_dir / rev.sha
            _rmtree(dest)  # left by an agent that was killed: exports are scratch, git has the content
            with timer.stage("export"):
                folder = self.source.export(rev.sha, dest)
            # Keep only the current export: older ones are in git if a rollback needs them.
            for sha, old in list(self._exported.items()):
                _rmtree(old)
                del self._exported[sha]
            self._exported[rev.sha] = folder
        return DesiredInput(folder=folder, sha=rev.sha, author=rev.author, message=rev.message,
                            signature=str(rev.signature), refusal=sync.refusal if sync.refused else None)

    def run_once(self, reasons: set[str] | None = None) -> PassResult:
        reasons = reasons or {"manual"}
        mode = fetch_mode(reasons, push_pending=self._push_pending)
        timer = StageTimer()
        if mode != "none":
            self._push_pending = False
        desired = self.desired_input(mode != "none", timer, cheap=mode == "check")
        result = self.reconciler.run_pass(desired, trigger=",".join(sorted(reasons)), timer=timer)
        self._publish(result)
        return result

    def _publish(self, result: PassResult) -> None:
        sync = self._last_sync
        status = {
            "node": self.settings.node_name, "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "outcome": result.outcome, "message": result.message, "revision": result.revision,
            "leader": result.leader, "pending_changes": result.changes, "events": result.events,
            "source_error": sync.error if sync else None,
            "source_revision": sync.revision.sha if sync and sync.revision else None,
            "repo": self.settings.repo_url, "branch": self.settings.branch, "path": self.settings.path,
            "reasons": result.decision.codes if result.decision else [],
            "verdict": result.decision.verdict if result.decision else None,
            "last_failure": self._last_failure(result),
            "verify_pending": self.reconciler.verify_waiting,
        }
        self.metrics.observe_pass(result)
        self.notifier.status(f"{result.outcome}: {result.message}"[:200])
        self._write_status(status)

    def _write_status(self, status: dict[str, Any]) -> None:
        """The last pass, for `status`: in a file off the audit disk first (so `status` can say the trail
        cannot be written), then in the trail's state table (what a shared trail shows other nodes)."""
        path = self.settings.status_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(status, default=str))
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot write %s: %s", path, exc)
        try:
            self.store.set_state(STATUS_KEY, status, scope=self.settings.node_name)
            self._publish_errors.ok()
        except AuditError as exc:  # the pass itself is done; the status file says what happened
            self._publish_errors.failed(f"cannot publish the agent's status in the audit trail: {exc}", None)

    def _record_pass_failure(self, exc: Exception) -> None:
        """A pass that raised: one audit event per distinct error (stage `pass`), and the status says so."""
        from controller.failures import Failure
        from controller.reconcile import PassFailed

        failure = exc.failure if isinstance(exc, PassFailed) else \
            Failure.of("pass", f"{type(exc).__name__}: {exc}")
        try:
            if failure.event is None and self.store.get_state("pass-failed", scope=self.settings.node_name) \
                    != failure.message:
                self.store.set_state("pass-failed", failure.message, scope=self.settings.node_name)
                failure.event = self.store.append(NewEvent(
                    node=self.settings.node_name, kind="error", outcome="failure", error=failure.message,
                    summary=f"pass failed: {failure.message}"[:300], details=failure.details()),
                    notify=route("error", "failure", self.settings.notify)).id
            self._failure = {**failure.model_dump(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
            self._write_status({"node": self.settings.node_name, "outcome": "error", "message": str(exc),
                                "time": datetime.now(UTC).isoformat(), "last_failure": self._failure})
        except Exception as store_exc:  # the audit store itself is failing: the log is all we have
            log.debug("cannot record the failed pass: %s", store_exc)

    def _last_failure(self, result: PassResult) -> dict[str, Any] | None:
        """The newest failure of a pass on this node (kept until a later one replaces it)."""
        if result.failure is not None:
            self._failure = {**result.failure.model_dump(),
                             "time": datetime.now(UTC).isoformat(timespec="seconds")}
        return self._failure

    # ------------------------------------------------------------------ crmsh
    def _on_observed(self, writer: bool | None) -> None:
        """A pass has read the cluster: from here on it runs at the priority its role deserves, and the
        warm crmsh goes where the writer is. While there is no DC (an election) everything stays."""
        if writer is None:
            return
        self._set_priority(observer=not writer)
        self._update_warm_crm(writer)

    def _update_warm_crm(self, writer: bool) -> None:
        """Keep a warm crmsh where the settings want one: on the DC ("dc") or everywhere ("always"). Called
        as soon as a pass has read the cluster; a new one is started and primed with the current cib.crm
        in the background, so that the next push finds crmsh loaded and its agent metadata cached."""
        if self.crm is None:
            return
        want = self.settings.warm_crm == "always" or writer
        if want == self.crm.kept:
            return
        if not want:
            log.info("not the DC: warm crmsh stopped")
            self.crm.close()  # a priming still under way ends as a new crm process, starting nothing
            return
        self.crm.open()
        crm_file = next((f / "cib.crm" for f in self._exported.values() if (f / "cib.crm").is_file()), None)
        threading.Thread(target=self._prime_crm, args=(crm_file,), daemon=True, name="crm-prime").start()

    def _prime_crm(self, crm_file: Path | None) -> None:
        assert self.crm is not None
        self._set_priority(observer=False)  # this thread, and the crmsh it starts, work for the writer
        try:
            self.crm.start()
            if self.crm.pid is None:  # closed meanwhile: no longer the DC
                return
            if crm_file is not None:
                crm_to_configuration(crm_file.read_text(), source=str(crm_file), use_cache=False,
                                     runner=self.crm.run)
            log.info("warm crmsh ready (pid %s)", self.crm.pid)
        except Exception as exc:  # conversions then run as new crm processes
            log.warning("warm crmsh: %s", exc)

    def _set_priority(self, *, observer: bool) -> None:
        """An agent that does not write (not on the DC) runs its passes, and the tools they start, at a
        lower CPU priority: its work can wait, the node's services and the DC's agent cannot. Linux keeps
        the nice value per thread; passes run on this (the main) thread and threads it starts."""
        want = OBSERVER_NICE if observer else 0
        try:
            if os.getpriority(os.PRIO_PROCESS, 0) != want:
                os.setpriority(os.PRIO_PROCESS, 0, want)
        except OSError as exc:  # raising the priority again needs CAP_SYS_NICE
            log.debug("cannot set CPU priority %d: %s", want, exc)

    # ------------------------------------------------------------------ service
    def start_watchers(self) -> None:
        from controller.source.watch import SourceTrigger, watch_cib

        # The poller and the push watcher only raise a flag: the passes run on this agent's one worker.
        self._source_trigger = SourceTrigger(self.trigger, poll_interval=self.settings.poll_interval,
                                             repo_url=self.settings.require_repo("agent"),
                                             branch=self.settings.branch,
                                             debounce=self.settings.watch_debounce, run_at_start=False,
                                             watch=self.settings.watch_source)
        self._source_trigger.start()
        self._stoppers.append(self._source_trigger.stop)
        if self.settings.drift_mode != "off" and (self.cib_dir / "cib.xml").parent.is_dir():
            cib = watch_cib(lambda: self.trigger("cib-change"), debounce=self.settings.drift_debounce,
                            path=self.cib_dir / "cib.xml")
            self._stoppers.append(cib.stop)

    def start_http(self) -> None:
        """The HTTP listener (webhooks, /metrics, /healthz) where http_listen does not switch it off. The
        secret file is read here, once: a change needs an agent restart."""
        from controller.service.http import AgentHTTP, load_webhook_secret

        address = self.settings.http_address
        if address is None:
            return
        secret = load_webhook_secret(self.settings)
        try:
            server = AgentHTTP(address, metrics=self.metrics, trigger=self.trigger, alive=self.alive,
                               branch=self.settings.branch, secret=secret,
                               max_body=self.settings.webhook_max_body).start()
        except OSError as exc:
            raise InputError(f"cannot listen on {self.settings.http_listen}: {exc.strerror or exc}",
                             element="http_listen") from exc
        self.http = server
        self._stoppers.append(server.stop)

    def alive(self) -> tuple[bool, dict[str, Any]]:
        """What /healthz says: the loop beat recently (it beats at least every 30 s between passes)."""
        from controller.service.http import liveness

        return liveness(time.monotonic() - self._beat, stopping=self._stop.is_set(), bound=MAX_PASS + 60.0,
                        last_outcome=self._last.outcome if self._last else None)

    def _verify_audit(self) -> None:
        """Verify the whole audit chain at start and then hourly, off the worker (for /metrics: a scrape
        never walks the chain)."""
        while not self._stop.is_set():
            try:
                ok = self.store.verify().ok
            except Exception as exc:  # an unreadable trail is not a verified one
                log.warning("audit chain verify: %s", exc)
                ok = False
            self.metrics.observe_audit_verify(ok)
            if not ok:
                log.error("the audit chain does not verify: run `ha-gitops audit verify`")
            self._stop.wait(AUDIT_VERIFY_INTERVAL)

    def _watchdog(self, interval: float) -> None:
        """Tell systemd we are alive while the worker makes progress: a pass may legitimately wait minutes
        (settling, a rolling restart), but a worker stuck longer than MAX_PASS gets us restarted."""
        while not self._stop.is_set():
            if time.monotonic() - self._beat < MAX_PASS:
                self.notifier.watchdog()
            self._stop.wait(interval)

    def _on_signal(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Until SIGTERM/SIGINT: passes on every trigger, systemd told we are ready and alive."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.start_http()  # first: a bad secret file or a taken port stops the agent before it starts work
        self.start_watchers()
        threading.Thread(target=self._verify_audit, daemon=True, name="audit-verify").start()
        if self.sender is not None:
            self.sender.start()
        self.trigger("start")
        ready = False
        interval = self.notifier.watchdog_interval
        if interval:
            threading.Thread(target=self._watchdog, args=(interval,), daemon=True, name="watchdog").start()
        while not self._stop.is_set():
            self._wake.wait(timeout=30.0)
            self._beat = time.monotonic()
            reasons = self._take()
            if reasons & PUSH_REASONS and self._last is not None and not self._last.leader and self._last.dc:
                # Only the DC's agent writes: the others look a moment later, to record what it did, and
                # do not compete with it for the CPU (crmsh conversion) meanwhile. The push is remembered:
                # should this node become the writer before then, its next pass fetches first.
                reasons -= PUSH_REASONS
                self._push_pending = True
                self._observe_later()
            if not reasons or self._stop.is_set():
                continue
            try:
                self._beat = time.monotonic()
                result = self._last = self.run_once(reasons)
                # A pass that ends in an error (the CIB unreachable while pacemaker is down) is logged once
                # per distinct error, with its count, not once per pass.
                if result.outcome != "error":
                    self._errors.ok()
                if result.outcome != "error" or self._errors.failed(f"pass: error {result.message}", None):
                    log.info("pass (%s): %s %s [%s]", ",".join(sorted(reasons)), result.outcome,
                             result.message, " ".join(f"{k}={v:.3f}" for k, v in result.timings.items()))
                if result.changes and (result.outcome == "no-quorum" or result.dc is None):
                    # Changes are pending and the cluster is electing or regaining quorum: look again soon
                    # rather than at the next poll.
                    self._later("settle", 2.0)
                if result.leader and self._recheck_timer_due():
                    # An inconclusive verify waits for the cluster to be whole; a node rejoining writes
                    # no configuration (no CIB watch event), so look again on a clock.
                    self._recheck_timer = self._later("verify-recheck", RECHECK_INTERVAL)
            except Exception as exc:  # the service outlives a failing pass; it is retried on the next trigger
                self._errors.failed(f"pass failed: {type(exc).__name__}: {exc}", exc)
                self.metrics.observe_failed_pass()
                self._record_pass_failure(exc)
                time.sleep(1.0)
                self.trigger("retry")
            if not ready:
                self.notifier.ready(f"following {self.settings.branch} of {self.settings.repo_url}")
                ready = True
        self.notifier.stopping()
        for stop in self._stoppers:
            stop()
        self.source.close()
        if self.sender is not None:
            self.sender.stop()
        if self.crm is not None:
            self.crm.close()
        self.store.close()


def fetch_mode(reasons: set[str], *, push_pending: bool) -> Literal["none", "check", "fetch"]:
    """How a pass for `reasons` reads the source: not at all (a CIB change), "check" (a poll: ls-remote,
    then a fetch only when the branch moved) or "fetch" (a push, a webhook, the start, a retry)."""
    if push_pending or reasons & (FETCH_REASONS - {"poll"}):
        return "fetch"
    return "check" if "poll" in reasons else "none"


_MILESTONES = frozenset(10 ** k for k in range(1, 10))


class RepeatedErrors:
    """One log line per distinct error, however often it repeats (a CIB that stays unreachable would
    otherwise log a traceback per pass); the count is logged when it changes or stops."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.last: str | None = None
        self.count = 0

    def failed(self, message: str, exc: BaseException | None) -> bool:
        """Log `message` unless it repeats the last one; True when it was logged. A long run of the same
        error is still counted in the log now and then (after 10, 100, 1000, ... repeats)."""
        if message == self.last:
            self.count += 1
            if self.count in _MILESTONES:
                self.log.error("still failing, %d times so far: %s", self.count, message)
            return False
        self._summarise()
        self.last, self.count = message, 1
        self.log.error("%s", message, exc_info=exc)
        return True

    def ok(self) -> None:
        self._summarise()
        self.last, self.count = None, 0

    def _summarise(self) -> None:
        if self.last is not None and self.count > 1:
            self.log.error("the previous error repeated %d times: %s", self.count, self.last)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
