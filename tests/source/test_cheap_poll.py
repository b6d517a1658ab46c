"""Polling that costs little: a poll asks the remote where the branch is (ls-remote) and fetches only when
it moved. On real repositories (a file:// remote), counting the fetches git actually made."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from controller.source.decisions import fetch_needed, parse_ls_remote
from controller.source.git import GitSource
from tests.source.sourcetestlib import Upstream

MakeSource = Callable[..., GitSource]
A, B = "a" * 40, "b" * 40


def test_fetch_only_when_the_remote_branch_moved() -> None:
    assert not fetch_needed(A, A)
    assert fetch_needed(B, A)
    assert fetch_needed(None, A)   # the branch is gone: the fetch says so
    assert fetch_needed(A, None)   # nothing fetched yet


def test_ls_remote_output_names_the_exact_ref() -> None:
    out = f"{B}\trefs/heads/main-old\n{A}\trefs/heads/main\n"
    assert parse_ls_remote(out, "refs/heads/main") == A
    assert parse_ls_remote("", "refs/heads/main") is None
    assert parse_ls_remote("garbage\trefs/heads/main\n", "refs/heads/main") is None


def test_idle_polls_fetch_nothing_and_a_push_is_fetched(upstream: Upstream, make_source: MakeSource) -> None:
    src = make_source(f"file://{upstream.bare}")
    first = src.sync(cheap=True)  # nothing fetched yet: a cheap poll clones
    assert first.ok and first.revision is not None and src.fetches == 1
    for _ in range(3):
        idle = src.sync(cheap=True)
        assert idle.ok and idle.checked and not idle.moved
        assert idle.revision == first.revision
    assert (src.fetches, src.checks) == (1, 3)

    sha = upstream.commit({"cluster/cib.crm": "property cib-bootstrap-options: stonith-enabled=true\n"},
                          "enable stonith")
    moved = src.sync(cheap=True)
    assert moved.ok and moved.moved and moved.folder_changed and not moved.checked
    assert moved.revision is not None and moved.revision.sha == sha
    assert (src.fetches, src.checks) == (2, 4)
    # A push (or a webhook) fetches without asking first.
    assert src.sync().ok and (src.fetches, src.checks) == (3, 4)


def test_an_unreachable_remote_on_a_cheap_poll_backs_off_and_keeps_the_revision(
        upstream: Upstream, make_source: MakeSource, tmp_path: Path) -> None:
    moved = tmp_path / "moved.git"
    src = make_source(str(upstream.bare))
    good = src.sync().revision
    upstream.bare.rename(moved)
    try:
        res = src.sync(cheap=True)
        assert not res.ok and res.error and "cannot check" in res.error
        assert res.revision == good and res.retry_in is not None
        assert src.sync(cheap=True).skipped  # waiting out the backoff: no check either
    finally:
        shutil.move(str(moved), str(upstream.bare))
