"""The marker history and what a trail missed (controller.cib.marker, controller.gaps): pure, milliseconds.

A node that was away sees only the marker's newest write; the history names the writes before it and
the one just before the oldest kept, so the node can tell what to backfill and where a gap remains.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from controller.cib.marker import (
    HISTORY_MAX,
    HISTORY_MAX_BYTES,
    HistoryEntry,
    Marker,
    announce,
    history_entries,
    previous_event,
    previous_write,
    push_history,
    read_marker,
    with_history,
    with_marker,
)
from controller.gaps import SHARED_GRACE, Backfill, plan_backfill

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def ev(i: int) -> str:
    return f"{i:08d}-0000-4000-8000-000000000000"


def write(m: Marker, i: int, *, node: str = "kamailio01", kind: str = "apply", at: int | None = None
          ) -> Marker:
    """What cib_writer puts in the CIB for write number i (at T0 + i seconds, or T0 + `at`)."""
    return with_history(m, m.model_copy(update={
        "event": ev(i), "kind": kind, "revision": SHA, "digest": "d" * 64, "applied_by": node,
        "applied_at": (T0 + timedelta(seconds=i if at is None else at)).isoformat()}))


def writes(n: int, start: Marker | None = None) -> Marker:
    m = start or Marker()
    for i in range(1, n + 1):
        m = write(m, i)
    return m


def test_each_write_is_named_newest_first_with_the_one_before_it() -> None:
    m = writes(3)
    assert [e.event for e in history_entries(m)] == [ev(3), ev(2), ev(1)]
    assert m.history_before is None  # the cluster's first write has nothing before it
    first = history_entries(m)[0]
    assert (first.kind, first.revision, first.node, first.digest) == ("apply", SHA, "kamailio01", "d" * 16)
    assert first.time == T0 + timedelta(seconds=3)
    assert previous_event(m, ev(3)) == ev(2) and previous_event(m, ev(1)) is None


def test_a_marker_only_change_keeps_the_history() -> None:
    m = writes(2)
    suspended = with_history(m, m.model_copy(update={"suspended": True}))
    assert suspended.history == m.history


def test_the_history_is_bounded_by_count_and_names_what_it_dropped() -> None:
    m = writes(HISTORY_MAX + 5)
    entries = history_entries(m)
    assert len(entries) == HISTORY_MAX and entries[0].event == ev(HISTORY_MAX + 5)
    assert entries[-1].event == ev(6) and m.history_before == ev(5)
    assert previous_event(m, ev(6)) == ev(5)


def test_the_history_is_bounded_by_size() -> None:
    m = Marker()
    for i in range(1, 40):
        m = write(m, i, node="n" * 200)  # long node names: the byte cap, not the count, binds
    assert m.history is not None and len(m.history) <= HISTORY_MAX_BYTES
    kept = history_entries(m)
    assert 1 < len(kept) < HISTORY_MAX and m.history_before == ev(39 - len(kept))


def test_fields_with_separators_survive_and_the_marker_round_trips_through_the_cib() -> None:
    m = writes(1)
    odd = HistoryEntry(event=ev(2), kind="apply", revision="folder:/srv/a,b;c d%", node="node,1", at=5)
    m = push_history(m, odd)
    cib = etree.fromstring(b"<cib><configuration><crm_config/></configuration></cib>")
    back = read_marker(with_marker(cib, m))
    assert back == m and history_entries(back)[0] == odd
    assert history_entries(Marker(history="garbage;;" + odd.encode())) == [odd]  # a bad entry skipped


def test_a_write_after_an_agent_that_kept_no_history_names_that_write() -> None:
    old = Marker(event=ev(1), kind="apply", revision=SHA, applied_by="kamailio02",
                 applied_at=T0.isoformat())
    m = write(old, 2)
    assert [e.event for e in history_entries(m)] == [ev(2), ev(1)] and previous_event(m, ev(2)) == ev(1)


def plan(m: Marker, known: set[str], *, last_seen: str | None, shared: bool = False,
         now: datetime = T0 + timedelta(hours=1), node: str = "kamailio03") -> Backfill:
    return plan_backfill(m, known, node=node, last_seen=last_seen, last_seen_at=None, now=now, shared=shared)


def test_a_node_back_from_downtime_backfills_what_it_missed_oldest_first() -> None:
    m = writes(10)
    known = {ev(i) for i in range(1, 6)}  # it saw 1..5, was away for 6..10
    p = plan(m, known, last_seen=ev(5))
    assert [(x.entry.event, x.prev, x.current) for x in p.record] == [
        (ev(6), ev(5), False), (ev(7), ev(6), False), (ev(8), ev(7), False), (ev(9), ev(8), False),
        (ev(10), ev(9), True)]
    assert p.gap is None and not any(x.recovered for x in p.record)


def test_nothing_to_do_for_a_node_that_saw_everything() -> None:
    m = writes(30)
    p = plan(m, {ev(i) for i in range(1, 31)}, last_seen=ev(30))
    assert p.record == [] and p.gap is None


def test_a_history_that_rolled_past_the_last_write_held_is_a_gap() -> None:
    m = writes(HISTORY_MAX + 10)  # history: 11..34, before it 10
    known = {ev(i) for i in range(1, 4)}  # away from write 4 on
    p = plan(m, known, last_seen=ev(3))
    assert len(p.record) == HISTORY_MAX and p.record[0].entry.event == ev(11)
    assert p.gap is not None
    assert (p.gap.after_event, p.gap.before_event, p.gap.lost_event) == (ev(3), ev(11), ev(10))
    assert p.gap.until == T0 + timedelta(seconds=11)
    # The history reaching exactly back to the last write held: no gap.
    assert plan(m, {ev(10)}, last_seen=ev(10)).gap is None


def test_a_new_trail_records_the_history_without_a_gap() -> None:
    p = plan(writes(HISTORY_MAX + 10), set(), last_seen=None)
    assert len(p.record) == HISTORY_MAX and p.gap is None


def test_an_own_unrecorded_write_is_recovered() -> None:
    m = write(writes(2), 3, node="kamailio03")
    p = plan(m, {ev(1), ev(2)}, last_seen=ev(2))
    assert [(x.entry.event, x.recovered) for x in p.record] == [(ev(3), True)]


def test_a_shared_trail_leaves_a_fresh_write_to_its_writer() -> None:
    m = write(writes(2), 3, at=600)
    fresh = T0 + timedelta(seconds=600) + SHARED_GRACE / 2
    p = plan(m, {ev(1)}, last_seen=ev(1), shared=True, now=fresh)
    assert [x.entry.event for x in p.record] == [ev(2)] and p.deferred == 1
    # Still missing once the grace is over: the writer died before recording it; another agent does.
    p = plan(m, {ev(1)}, last_seen=ev(1), shared=True, now=fresh + SHARED_GRACE)
    assert [x.entry.event for x in p.record] == [ev(2), ev(3)] and p.deferred == 0


def test_a_refusal_and_a_failed_verify_are_history_entries_of_their_own() -> None:
    m = writes(2)
    refused = HistoryEntry(event=ev(3), kind="refused", revision=SHA, node="kamailio01", at=7,
                           outcome="refused", codes=("invalid", "signature"))
    m2 = announce(m, refused)
    assert m2.event == ev(2)  # the marker's own write stays the last write
    assert history_entries(m2)[0] == refused and not refused.writes_configuration
    assert announce(m2, refused) == m2  # announced once
    assert history_entries(Marker(history=refused.encode())) == [refused]
    # A write's entry keeps its six fields (what an agent of the previous version reads).
    assert len(history_entries(m)[0].encode().split(",")) == 6 and history_entries(m)[0].writes_configuration
    # A failed verify announced with the auto-rollback that follows it: both, in one write.
    verify = HistoryEntry(event=ev(4), kind="verify", revision=SHA, node="kamailio01", outcome="failure",
                          codes=("HealthCheckFailed",))
    rolled = with_history(m2, announce(m2, verify).model_copy(update={"event": ev(5),
                                                                      "kind": "auto-rollback"}))
    assert [e.event for e in history_entries(rolled)] == [ev(5), ev(4), ev(3), ev(2), ev(1)]
    assert previous_event(rolled, ev(5)) == ev(4)


def test_the_marker_write_is_seen_now_even_under_a_newer_refusal() -> None:
    """An observer finding a write and a refusal after it in one pass records the write as seen (with the
    live configuration), not as backfilled."""
    m = announce(writes(3), HistoryEntry(event=ev(4), kind="refused", revision=SHA, node="kamailio01",
                                         outcome="refused", codes=("invalid",)))
    p = plan(m, {ev(1), ev(2)}, last_seen=ev(2))
    assert [(x.entry.event, x.current) for x in p.record] == [(ev(3), True), (ev(4), True)]
    # The write before a write, past what wrote no configuration in between.
    m5 = write(m, 5)
    assert previous_event(m5, ev(5)) == ev(4) and previous_write(m5, ev(5)) == ev(3)
    assert previous_write(m5, ev(1)) is None and previous_write(m5, "nope") is None
    p = plan(m, {ev(1)}, last_seen=ev(1))
    assert [(x.entry.event, x.current) for x in p.record] == [(ev(2), False), (ev(3), True), (ev(4), True)]
