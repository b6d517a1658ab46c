"""`ha-gitops blame` (controller.blame): the event that last changed each object, from a trail. Pure.

The writer's trail has each write's diff; an observer's has the configurations it saw around the write
(or only after it); a node back from downtime has backfilled writes with neither, which blame names
rather than guesses past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.audit.masking import MASK, mask_json
from controller.blame import TrailEvent, blame

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


def config(ip: str = "10.0.0.1", stickiness: str = "100", extra: str = "") -> str:
    return f"""<configuration>
  <crm_config><cluster_property_set id="cib-bootstrap-options">
    <nvpair id="o-nq" name="no-quorum-policy" value="stop"/></cluster_property_set></crm_config>
  <nodes/>
  <resources>
    <primitive id="IP-HA-01" class="ocf" provider="heartbeat" type="IPaddr2">
      <instance_attributes id="ip-params">
        <nvpair id="ip-ip" name="ip" value="{ip}"/>
        <nvpair id="ip-pw" name="passwd" value="s3cr3t-{ip}"/>
      </instance_attributes>
    </primitive>{extra}
  </resources>
  <constraints/>
  <rsc_defaults><meta_attributes id="rsc-options">
    <nvpair id="rsc-st" name="resource-stickiness" value="{stickiness}"/></meta_attributes></rsc_defaults>
</configuration>"""


def change(kind: str, ident: str, action: str = "changed", **fields: tuple[str | None, str | None]
           ) -> dict[str, Any]:
    return {"kind": kind, "id": ident, "action": action,
            "details": [{"field": f.replace("__", "."), "old": o, "new": n} for f, (o, n) in fields.items()]}


def event(seq: int, kind: str = "apply", *, outcome: str = "success", sha: str | None = SHA1,
          author: str | None = "Jane <jane@example.org>", **kw: Any) -> TrailEvent:
    return TrailEvent(seq=seq, event_id=f"{seq:08d}-0000-4000-8000-000000000000",
                      time=T0 + timedelta(minutes=seq), node=kw.pop("node", "kamailio01"), kind=kind,
                      outcome=outcome, commit_sha=sha, commit_author=author if sha else None, **kw)


def test_each_object_is_blamed_on_the_last_write_that_changed_it() -> None:
    events = [
        event(1, diff=[change("resource", "IP-HA-01", "added"), change("rsc_default", "resource-stickiness",
                                                                       "added")]),
        event(2, sha=SHA2, author="Joe <joe@example.org>",
              diff=[change("resource", "IP-HA-01", params__ip=("10.0.0.1", "10.0.0.2"))]),
        # Neither a refusal, nor a write that failed, nor a verify changes anything.
        event(3, "refused", outcome="refused", sha=SHA3, diff=[change("resource", "IP-HA-01")]),
        event(4, "apply", outcome="failure", sha=SHA3, diff=[change("resource", "IP-HA-01")]),
        event(5, "verify", outcome="failure", sha=SHA2),
    ]
    got = {o.object: o for o in blame(events).objects}
    assert set(got) == {"resource IP-HA-01", "rsc_default resource-stickiness"}
    ip = got["resource IP-HA-01"]
    assert (ip.commit, ip.author, ip.event, ip.event_kind, ip.action) == (SHA2, "Joe <joe@example.org>", 2,
                                                                         "apply", "changed")
    assert ip.event_id == events[1].event_id and ip.time == T0 + timedelta(minutes=2)
    assert [(f.field, f.old, f.new) for f in ip.fields] == [("params.ip", "10.0.0.1", "10.0.0.2")]
    assert got["rsc_default resource-stickiness"].commit == SHA1
    # One object, by id or kind:id; one no event changed.
    assert [o.commit for o in blame(events, "IP-HA-01").objects] == [SHA2]
    assert [o.id for o in blame(events, "rsc_default:resource-stickiness").objects] == ["resource-stickiness"]
    assert blame(events, "NOPE").objects == []


def test_an_observed_write_is_diffed_from_the_configurations_it_holds() -> None:
    """An observer's event has no diff, only the configurations it saw (and no author when it had not
    fetched the commit): the changes are computed, the author found in another event of the commit."""
    events = [
        event(1, config_before=config(), config_after=config(ip="10.0.0.2"), sha=SHA2, author=None,
              details={"applied_at": (T0 + timedelta(seconds=30)).isoformat(), "marker_event": "x"}),
        event(2, "refused", outcome="refused", sha=SHA2, author="Joe <joe@example.org>"),
        # Only the configuration after it (this agent had just started): diffed against the write before.
        event(3, config_after=config(ip="10.0.0.2", stickiness="300"), sha=SHA3, node="kamailio02",
              details={"marker_prev": f"{1:08d}-0000-4000-8000-000000000000"}),
    ]
    got = {o.object: o for o in blame(events).objects}
    ip = got["resource IP-HA-01"]
    assert (ip.commit, ip.author, ip.time) == (SHA2, "Joe <joe@example.org>", T0 + timedelta(seconds=30))
    assert {f.field for f in ip.fields} == {"params.ip", "params.passwd"}
    st = got["rsc_default resource-stickiness"]
    assert (st.commit, st.node, [(f.old, f.new) for f in st.fields]) == (SHA3, "kamailio02", [("100", "300")])
    assert blame(events).unknown == []


def test_a_backfilled_write_is_named_and_what_it_may_have_changed_marked() -> None:
    events = [
        event(1, diff=[change("resource", "IP-HA-01", "added")]),
        event(2, sha=SHA2, details={"backfilled": True, "source": "cib-marker-history"}),
        event(3, sha=SHA3, diff=[change("rsc_default", "resource-stickiness", value=("100", "200"))]),
    ]
    b = blame(events)
    assert [(u.event, u.backfilled) for u in b.unknown] == [(2, True)]
    got = {o.object: o for o in b.objects}
    assert got["resource IP-HA-01"].unsure_after == [events[1].event_id]
    assert got["rsc_default resource-stickiness"].unsure_after == []
    # An only-after configuration right after a backfilled write is not diffed against an older one.
    late = event(4, config_after=config(), details={"marker_prev": events[1].event_id})
    assert [u.event for u in blame([*events, late]).unknown] == [2, 4]


def test_a_hand_edit_is_blamed_on_who_made_it_until_a_write_changes_the_object_again() -> None:
    # The drift diff says how to undo the edit (live -> what was written): the edit is its reverse.
    edit = event(2, "drift-detected", sha=SHA1,
                 diff=[change("rsc_default", "resource-stickiness", value=("5", "100")),
                       change("resource", "DUMMY", "removed")],
                 details={"origin": {"update-user": "root", "update-client": "crm_attribute",
                                     "update-origin": "kamailio02"}})
    events = [event(1, diff=[change("rsc_default", "resource-stickiness", "added")]), edit]
    got = {o.object: o for o in blame(events).objects}
    st = got["rsc_default resource-stickiness"]
    assert (st.event_kind, st.by, [(f.old, f.new) for f in st.fields]) == (
        "drift-detected", "root via crm_attribute on kamailio02", [("100", "5")])
    assert got["resource DUMMY"].action == "added"
    fixed = event(3, "drift-corrected", diff=[change("rsc_default", "resource-stickiness",
                                                     value=("5", "100"))])
    assert blame([*events, fixed], "resource-stickiness").objects[0].event_kind == "drift-corrected"


def test_a_record_only_write_changes_nothing_and_blame_output_masks_secrets() -> None:
    events = [event(1, config_before=config(), config_after=config(ip="10.9.9.9")),
              event(2, sha=SHA2, config_before=config(ip="10.9.9.9"), config_after=config(ip="10.9.9.9"),
                    details={"record_only": True})]
    b = blame(events, "IP-HA-01")
    assert [o.commit for o in b.objects] == [SHA1] and b.unknown == []
    shown = mask_json(b.model_dump(mode="json"))
    fields = {f["field"]: f for f in shown["objects"][0]["fields"]}
    assert fields["params.passwd"]["old"] == MASK and fields["params.passwd"]["new"] == MASK
    assert fields["params.ip"]["new"] == "10.9.9.9"  # not a secret


def test_a_refusal_between_two_writes_does_not_hide_the_configuration_before() -> None:
    """The marker history names the refusal as the event before the second write; what the first write
    left is still the configuration before it. A hand edit between is not."""
    first = event(1, config_before=config(), config_after=config(stickiness="200"))
    refusal = event(2, "refused", outcome="refused", sha=SHA2)
    second = event(3, sha=SHA3, config_after=config(stickiness="300"),
                   details={"marker_prev": refusal.event_id})
    st = blame([first, refusal, second], "resource-stickiness").objects[0]
    assert (st.commit, [(f.old, f.new) for f in st.fields]) == (SHA3, [("200", "300")])
    edit = event(2, "drift-detected", diff=[change("rsc_default", "resource-stickiness", value=("5", "200"))])
    after_edit = second.model_copy(update={"details": {"marker_prev": first.event_id}})
    assert [u.event for u in blame([first, edit, after_edit]).unknown] == [3]
