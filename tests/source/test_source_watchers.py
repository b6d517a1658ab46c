"""Watchers on real files and repositories: push trigger latency, poller interval, CIB file watcher."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.source.git import GitSource
from controller.source.watch import FileWatcher, SingleFlight, SourceTrigger, watch_cib
from tests.source.sourcetestlib import Upstream, git

MakeSource = Callable[..., GitSource]


class Calls:
    def __init__(self) -> None:
        self.items: list[tuple[float, str]] = []
        self.event = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, reason: str = "") -> None:
        with self.lock:
            self.items.append((time.monotonic(), reason))
        self.event.set()

    def wait(self, timeout: float) -> float | None:
        """Seconds until the next call, or None."""
        start = time.monotonic()
        ok = self.event.wait(timeout)
        self.event.clear()
        return time.monotonic() - start if ok else None

    def reasons(self) -> list[str]:
        with self.lock:
            return [r for _, r in self.items]


@pytest.mark.parametrize("scheme", ["path", "file"])
def test_push_to_local_repo_triggers_without_a_poll(upstream: Upstream, scheme: str) -> None:
    calls = Calls()
    url = str(upstream.bare) if scheme == "path" else f"file://{upstream.bare}"
    with SourceTrigger(calls, poll_interval=3600, repo_url=url, branch="main", debounce=0.1,
                       run_at_start=False) as trigger:
        assert trigger.watching
        time.sleep(0.2)  # let the inotify watches settle
        assert calls.reasons() == []
        upstream.commit({"cluster/cib.crm": "changed\n"}, "change", push=False)
        pushed = time.monotonic()
        upstream.push()
        assert calls.wait(10.0) is not None  # the poll is an hour away: only the watch can have fired
        latency = calls.items[0][0] - pushed
        print(f"\npush -> trigger latency ({scheme}): {latency * 1000:.0f} ms")
        assert calls.reasons() == ["push"]
        # A push to another branch is not ours.
        upstream.commit({}, "other", push=False)
        git("push", "-q", "origin", "HEAD:refs/heads/feature", cwd=upstream.work)
        assert calls.wait(0.6) is None


def test_our_own_fetch_does_not_trigger(upstream: Upstream, make_source: MakeSource) -> None:
    calls = Calls()
    src = make_source(str(upstream.bare))
    with SourceTrigger(calls, poll_interval=3600, repo_url=str(upstream.bare), branch="main",
                       debounce=0.1, run_at_start=False):
        time.sleep(0.2)
        assert src.sync().ok and src.sync(force=True).ok  # reads the remote's refs: not a change
        assert calls.wait(0.6) is None


def test_poller_calls_back_on_interval_without_overlap() -> None:
    active, overlap = [0], [0]
    calls = Calls()
    lock = threading.Lock()

    def slow(reason: str) -> None:
        with lock:
            active[0] += 1
            overlap[0] = max(overlap[0], active[0])
        calls(reason)
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    with SourceTrigger(slow, poll_interval=0.2, repo_url="git@example.org:x.git", branch="main") as t:
        assert not t.watching  # ssh remote: polling only
        deadline = time.monotonic() + 20
        while sum(r == "poll" for _, r in calls.items) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        t.trigger()  # a manual trigger runs on top of the interval
        while "manual" not in calls.reasons() and time.monotonic() < deadline:
            time.sleep(0.05)
    times = [ts for ts, r in calls.items if r == "poll"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(f"\npoll calls: {len(times)}, gaps " + ", ".join(f"{g:.2f}" for g in gaps))
    assert len(times) >= 5  # one at start, then again and again
    # on a fixed 0.2 s schedule: a slow machine makes calls late, or coalesces them, never adds any
    assert len(times) <= (times[-1] - times[0]) / 0.2 + 2, gaps
    assert "manual" in calls.reasons()
    assert overlap[0] == 1


def test_retry_in_fires_before_the_next_poll() -> None:
    calls = Calls()
    with SourceTrigger(calls, poll_interval=3600, repo_url="https://example.org/x.git", branch="main",
                       run_at_start=False) as t:
        start = time.monotonic()
        t.retry_in(0.3)
        assert calls.wait(2.0) is not None
        assert 0.25 <= calls.items[0][0] - start < 1.0
        assert calls.reasons() == ["retry"]


def test_single_flight_folds_triggers_into_one_more_run() -> None:
    seen: list[str] = []
    gate = threading.Event()

    def fn(reason: str) -> None:
        seen.append(reason)
        if reason == "poll":
            gate.wait(2)

    sf = SingleFlight(fn)
    t = threading.Thread(target=sf, args=("poll",))
    t.start()
    time.sleep(0.05)
    sf("push")
    sf("retry")  # folded: at most one follow-up run
    gate.set()
    t.join(2)
    assert seen == ["poll", "push"]


def test_cib_watcher_sees_rename_create_and_debounces(tmp_path: Path) -> None:
    cib_dir = tmp_path / "cib"
    cib_dir.mkdir()
    cib = cib_dir / "cib.xml"
    calls = Calls()
    with watch_cib(lambda: calls("cib"), debounce=0.15, path=cib):
        time.sleep(0.1)
        (cib_dir / "cib-7.raw").write_text("<cib/>")  # Pacemaker's other files: ignored
        cib.with_name("cib.xml.sig").write_text("x")
        assert calls.wait(0.5) is None
        cib.write_text("<cib epoch='1'/>")  # created
        assert calls.wait(1.5) is not None
        tmp = cib_dir / "cib.5YfTq2"
        tmp.write_text("<cib epoch='2'/>")
        tmp.rename(cib)  # how Pacemaker replaces it
        assert calls.wait(1.5) is not None
        _ = cib.read_text()  # reading is not a change
        assert calls.wait(0.4) is None
        for i in range(5):  # a burst of writes: one callback
            cib.write_text(f"<cib epoch='{i + 3}'/>")
            time.sleep(0.03)
        assert calls.wait(1.5) is not None
        assert calls.wait(0.4) is None
    assert len(calls.items) == 3


def test_file_watcher_max_wait_bounds_a_continuous_burst(tmp_path: Path) -> None:
    target = tmp_path / "f"
    calls = Calls()
    with FileWatcher([target], lambda: calls("f"), debounce=0.2, max_wait=0.5):
        start = time.monotonic()
        while time.monotonic() - start < 1.2:  # never quiet for 0.2 s
            target.write_text(str(time.monotonic()))
            time.sleep(0.05)
        first = calls.items[0][0] - start if calls.items else None
    assert first is not None and first < 0.8, first
