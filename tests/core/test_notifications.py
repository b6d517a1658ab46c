"""Notifications, the pure part and the settings: which targets an event goes to, the message, the retry
schedule, and `[[notify]]` tables refused with the table named and the URL never echoed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.audit.models import AuditEvent, CommitInfo
from controller.errors import InputError
from controller.notifications import (
    DEFAULT_EVENTS,
    FAILING_AFTER,
    NotifyTarget,
    backoff,
    message,
    route,
    scrub,
    state_after_failure,
)
from controller.settings import load_settings

SECRET = "xoxb-s3cr3t-T0KEN-value"


def _target(**kw: object) -> NotifyTarget:
    return NotifyTarget.model_validate({"url": f"json://ops:{SECRET}@127.0.0.1:9/hook", **kw})


def _event(**kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "id": 7, "event_id": "0b5e3c4a-1111-4222-8333-444455556666", "prev_hash": "0" * 64, "hash": "1" * 64,
        "time": datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC), "node": "kamailio01", "kind": "drift-detected",
        "outcome": "success", "summary": "live configuration differs from abc: 1 object(s)"}
    fields.update(kw)
    return AuditEvent.model_validate(fields)


def test_default_events_tell_about_trouble_not_routine() -> None:
    t = _target()
    for kind, outcome in [("drift-detected", "success"), ("drift-corrected", "success"),
                          ("refused", "refused"), ("auto-rollback", "success"), ("rollback", "success"),
                          ("verify", "failure"), ("verify", "inconclusive"), ("rollout-step", "skipped"),
                          ("first-contact", "skipped"), ("error", "failure"), ("suspend", "success"),
                          ("resume", "success")]:
        assert route(kind, outcome, [t]) == [t.key], (kind, outcome)
    for kind, outcome in [("apply", "success"), ("verify", "success"), ("rollout-step", "success"),
                          ("first-contact", "success"), ("gap", "failure")]:
        assert route(kind, outcome, [t]) == [], (kind, outcome)


def test_events_select_kinds_pairs_or_everything() -> None:
    only_verify = _target(name="pager", events=["verify:failure", "auto-rollback"])
    everything = _target(name="archive", events=["*"])
    assert route("verify", "failure", [only_verify, everything]) == ["pager", "archive"]
    assert route("verify", "inconclusive", [only_verify, everything]) == ["archive"]
    assert route("apply", "success", [only_verify, everything]) == ["archive"]


def test_a_target_is_keyed_by_name_or_a_digest_never_the_url() -> None:
    t = _target()
    assert SECRET not in t.key and "127.0.0.1" not in t.key and t.key.startswith("url-")
    assert SECRET not in t.label and SECRET not in repr(t) and SECRET not in str(t.model_dump())
    assert _target(name="ops").key == "ops"


def test_message_names_cluster_event_commit_and_masks_secrets() -> None:
    ev = _event(commit=CommitInfo(sha="a" * 40, message="Raise the kamailio timeout\n\nbody"),
                kind="drift-corrected", summary="drift-corrected: 1 object(s) changed",
                error="set password=hunter2hunter on db")
    msg = message(ev.masked(), cluster="kamailio")
    assert msg.title == "ha-gitops kamailio: drift-corrected"
    assert "aaaaaaaaaa Raise the kamailio timeout" in msg.body
    assert "node: kamailio01" in msg.body and ev.event_id in msg.body
    assert "hunter2hunter" not in msg.body and "****" in msg.body
    assert msg.type == "success"
    refused = message(_event(kind="refused", outcome="refused", summary="invalid desired state"), cluster="c")
    assert refused.title == "ha-gitops c: refused (refused)" and refused.type == "warning"
    assert message(_event(kind="verify", outcome="failure"), cluster="c").type == "failure"


def test_message_body_stays_short() -> None:
    msg = message(_event(error="x\n" * 5000, summary="s" * 3000), cluster="c")
    assert len(msg.body) <= 1800


def test_backoff_doubles_to_the_maximum_with_bounded_jitter() -> None:
    no_jitter = [backoff(n, initial=5, maximum=600, rng=lambda: 0.0) for n in range(1, 10)]
    assert no_jitter == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    rngs = itertools.cycle([0.0, 0.5, 0.999])
    for n in range(1, 12):
        wait = backoff(n, initial=5, maximum=600, rng=lambda: next(rngs))
        base = min(600, 5 * 2 ** (n - 1))
        assert 0.8 * base <= wait <= base


def test_rows_show_as_failing_after_a_few_attempts_and_stay_retried() -> None:
    assert state_after_failure(1) == "pending"
    assert state_after_failure(FAILING_AFTER) == "failing"
    assert state_after_failure(100) == "failing"


def test_scrub_blanks_what_the_privacy_url_hides() -> None:
    url = f"slack://{SECRET}/B0000000/abcdefghijkl/#ops"
    shown = "slack://x...e/B...0/a...l/%23ops"
    scrubbed = scrub(f"failed to post to {url}: 403", url, shown)
    assert scrubbed == "failed to post to slack://****/****/****/#ops: 403"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_settings_read_notify_tables(tmp_path: Path) -> None:
    s = load_settings(_write(tmp_path, f'[[notify]]\nurl = "jsons://ops:{SECRET}@hooks.example.com/ha"\n'
                                      '[[notify]]\nname = "pager"\nurl = "ntfys://ntfy.example.com/ha"\n'
                                      'events = ["verify:failure"]\ntimeout = 3\n'))
    assert [t.name for t in s.notify] == [None, "pager"]
    assert s.notify[0].events == list(DEFAULT_EVENTS)
    assert s.notify[1].timeout == 3


def test_unknown_scheme_names_the_table_not_the_url(tmp_path: Path) -> None:
    path = _write(tmp_path, f'[[notify]]\nurl = "json://127.0.0.1/x"\n[[notify]]\nurl = "bogus://{SECRET}"\n')
    with pytest.raises(InputError) as exc:
        load_settings(path)
    text = str(exc.value)
    assert "notify[1]" in text and "'bogus'" in text and str(path) in text
    assert SECRET not in text


def test_unknown_event_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_settings(_write(tmp_path, f'[[notify]]\nurl = "json://a:{SECRET}@h/x"\nevents = ["drift"]\n'))
    assert "notify[0].events" in str(exc.value) and "unknown event kind 'drift'" in str(exc.value)
    assert SECRET not in str(exc.value)


def test_url_file_keeps_the_credential_out_of_agent_toml(tmp_path: Path) -> None:
    secret_file = tmp_path / "notify-url"
    secret_file.write_text(f"slack://{SECRET}/B0000000/abcdefghijklmnop/#ops\n")
    s = load_settings(_write(tmp_path, f'[[notify]]\nname = "slack"\nurl_file = "{secret_file}"\n'))
    assert s.notify[0].secret_url().startswith("slack://") and SECRET not in repr(s)
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match=r"notify\[0\].*is empty"):
        load_settings(_write(tmp_path, f'[[notify]]\nurl_file = "{tmp_path / "empty"}"\n'))


def test_a_table_needs_exactly_one_url(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exactly one of url and url_file"):
        load_settings(_write(tmp_path, '[[notify]]\nname = "x"\n'))


def test_two_targets_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a second target of that name"):
        load_settings(_write(tmp_path, '[[notify]]\nname = "a"\nurl = "json://h/x"\n'
                                       '[[notify]]\nname = "a"\nurl = "json://h/y"\n'))
