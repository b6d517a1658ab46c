"""Which passes of the agent fetch, which only ask the remote (a poll), which do not read git at all."""

from __future__ import annotations

from controller.agent import fetch_mode


def test_a_poll_only_checks_a_push_or_webhook_fetches_a_cib_change_reads_nothing() -> None:
    assert fetch_mode({"poll"}, push_pending=False) == "check"
    assert fetch_mode({"poll", "cib-change"}, push_pending=False) == "check"
    for reason in ("webhook", "push", "push-observe", "start", "retry", "manual"):
        assert fetch_mode({"poll", reason}, push_pending=False) == "fetch"
    assert fetch_mode({"cib-change"}, push_pending=False) == "none"
    assert fetch_mode({"settle", "verify-recheck"}, push_pending=False) == "none"


def test_a_push_an_observer_deferred_is_fetched_by_its_next_pass_whatever_woke_it() -> None:
    assert fetch_mode({"cib-change"}, push_pending=True) == "fetch"
    assert fetch_mode({"poll"}, push_pending=True) == "fetch"
