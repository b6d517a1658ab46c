"""When to look again: a poller (APScheduler), a push watcher for local remotes and a debounced file
watcher (watchdog) that also serves the CIB drift check.

Every trigger ends in one callback, `on_change(reason)`, run by SingleFlight: never two at once, and a
trigger arriving during a run causes exactly one more run afterwards (so no push is ever missed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from apscheduler.schedulers.background import BackgroundScheduler
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from controller.source.decisions import debounce_deadline, local_repo_path, ref_watch_files

log = logging.getLogger(__name__)

Reason = Literal["start", "poll", "push", "retry", "manual"]
DEFAULT_CIB_PATH = Path("/var/lib/pacemaker/cib/cib.xml")
# Reads are not changes: git reads the remote's refs on every fetch (ours included), Pacemaker reads cib.xml.
_IGNORED = (FileOpenedEvent, FileClosedNoWriteEvent, DirModifiedEvent, DirCreatedEvent, DirDeletedEvent,
            DirMovedEvent)


class SingleFlight:
    """Runs fn(reason) one at a time; triggers during a run are folded into one follow-up run."""

    def __init__(self, fn: Callable[[str], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._running = False
        self._pending: str | None = None

    def __call__(self, reason: str) -> None:
        with self._lock:
            if self._running:
                self._pending = self._pending or reason
                return
            self._running = True
        while True:
            try:
                self._fn(reason)
            except Exception:  # a failing pass must not kill the watcher thread
                log.exception("the change callback failed (reason %s)", reason)
            with self._lock:
                if self._pending is None:
                    self._running = False
                    return
                reason, self._pending = self._pending, None


def watch_dirs(files: Sequence[Path]) -> dict[Path, bool]:
    """Directories to watch for `files`: the nearest existing ancestor of each -> recursive (True when it
    is not the file's own parent, e.g. refs/heads/team/ before the first team/* branch exists)."""
    out: dict[Path, bool] = {}
    for f in files:
        d = f.parent
        while not d.is_dir() and d != d.parent:
            d = d.parent
        out[d] = out.get(d, False) or d != f.parent
    return out


class FileWatcher:
    """Calls `callback()` once a burst of writes/creates/moves/deletes of `files` has been quiet for
    `debounce` seconds (at the latest `max_wait` after the burst began). Watches the files' directories,
    so a file replaced by rename (Pacemaker's cib.xml, git's ref.lock -> ref) is seen."""

    def __init__(self, files: Sequence[Path], callback: Callable[[], None], *, debounce: float,
                 max_wait: float | None = None, name: str = "file-watcher") -> None:
        self.files = frozenset(Path(f).absolute() for f in files)
        self._callback = callback
        self._debounce = debounce
        self._max_wait = max_wait if max_wait is not None else max(4 * debounce, 1.0)
        self._name = name
        self._cond = threading.Condition()
        self._first: float | None = None
        self._last = 0.0
        self._stopped = False
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._thread: threading.Thread | None = None

    def start(self) -> FileWatcher:
        handler = FileSystemEventHandler()
        handler.on_any_event = self._on_event  # type: ignore[method-assign]
        observer = Observer()
        for d, recursive in watch_dirs(sorted(self.files)).items():
            observer.schedule(handler, str(d), recursive=recursive)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FileWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, _IGNORED):
            return
        paths = {event.src_path, getattr(event, "dest_path", "")} - {""}
        if not any(Path(p if isinstance(p, str) else p.decode()).absolute() in self.files for p in paths):
            return
        now = time.monotonic()
        with self._cond:
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._first is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                deadline = debounce_deadline(self._first or 0.0, self._last, self._debounce, self._max_wait)
                now = time.monotonic()
                if now < deadline:
                    self._cond.wait(deadline - now)
                    continue
                self._first = None
            try:
                self._callback()
            except Exception:
                log.exception("%s: callback failed", self._name)


def git_dir_of(repo: Path) -> Path:
    """The git directory of a local repository: bare, with a .git directory, or a .git file (worktree)."""
    dot = repo / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():
        target = dot.read_text().strip().removeprefix("gitdir:").strip()
        return (repo / target).resolve()
    return repo


def watch_cib(callback: Callable[[], None], *, debounce: float,
              path: Path = DEFAULT_CIB_PATH) -> FileWatcher:
    """A started watcher on Pacemaker's cib.xml (rewritten by rename on every configuration change)."""
    return FileWatcher([path], callback, debounce=debounce, max_wait=max(debounce * 6, 30.0),
                       name="cib-watcher").start()


class SourceTrigger:
    """Tells the agent "the source may have changed": every poll_interval (APScheduler), at once when a
    local/file:// remote's branch moves (watchdog), and when a fetch retry is due (retry_in)."""

    def __init__(self, on_change: Callable[[str], None], *, poll_interval: float, repo_url: str,
                 branch: str, debounce: float = 0.25, run_at_start: bool = True, watch: bool = True) -> None:
        self._run = SingleFlight(on_change)
        self._poll_interval = poll_interval
        self._repo = local_repo_path(repo_url) if watch else None
        self._branch = branch
        self._debounce = debounce
        self._run_at_start = run_at_start
        self._scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                            "misfire_grace_time": None})
        self._watcher: FileWatcher | None = None

    @property
    def watching(self) -> bool:
        """Whether pushes are watched (a local remote that existed at start)."""
        return self._watcher is not None

    def start(self) -> SourceTrigger:
        self._scheduler.start()
        now = datetime.now()
        first = now if self._run_at_start else now + timedelta(seconds=self._poll_interval)
        self._scheduler.add_job(self._run, "interval", seconds=self._poll_interval, args=["poll"], id="poll",
                                next_run_time=first)
        if self._repo is not None and self._repo.exists():
            git_dir = git_dir_of(self._repo)
            # Reflogs only where they exist (bare repos keep none): else the nearest existing ancestor
            # would be the git dir itself, watched recursively, objects and all.
            files = [f for f in ref_watch_files(git_dir, self._branch)
                     if "logs" not in f.relative_to(git_dir).parts or (git_dir / "logs").is_dir()]
            self._watcher = FileWatcher(files, lambda: self.trigger("push"), debounce=self._debounce,
                                        name="source-watcher").start()
        return self

    def trigger(self, reason: Reason = "manual") -> None:
        """Run the callback as soon as possible (on the scheduler's threads)."""
        self._scheduler.add_job(self._run, "date", run_date=datetime.now(), args=[reason],
                                id=f"trigger-{reason}", replace_existing=True)

    def retry_in(self, seconds: float) -> None:
        """Run the callback after `seconds` (a fetch backoff), whatever the poll interval."""
        self._scheduler.add_job(self._run, "date", run_date=datetime.now() + timedelta(seconds=seconds),
                                args=["retry"], id="retry", replace_existing=True)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._scheduler.running:
            # Empty the store first (this waits for the job-processing loop, which holds the store lock):
            # shutting down mid-loop makes APScheduler 3 raise JobLookupError in its own thread.
            self._scheduler.remove_all_jobs()
            self._scheduler.shutdown(wait=True)

    def __enter__(self) -> SourceTrigger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
