"""The write guard without a cluster: every patch (first try, each conflict retry, marker-only writes,
an operator's rollback) is preceded by a fresh "quorate, and the DC?" check, and a write that loses it is
not made and is recorded as skipped. The same race on a real sandbox: test_write_guard_on_sandbox.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from controller.audit.models import NewEvent
from controller.audit.store import AuditStore
from controller.cib.marker import Marker, read_marker, with_marker
from controller.cluster.adapter import LiveCluster
from controller.cluster.cib_writer import (
    CIB_OLDER_RC,
    QUORUM_ONLY,
    LostLeadership,
    WriteGuard,
    write_configuration,
    write_marker_only,
)
from controller.cluster.models import ClusterStatus, QuorumInfo
from controller.errors import CommandError
from controller.reconcile import PassFailed, Reconciler

NODES = '<node id="1" uname="kamailio01"/><node id="2" uname="kamailio02"/><node id="3" uname="kamailio03"/>'


def cib(stickiness: str, *, dc: str = "1", have_quorum: str = "1", epoch: int = 10) -> etree._Element:
    return etree.fromstring(
        f'<cib admin_epoch="0" epoch="{epoch}" num_updates="0" have-quorum="{have_quorum}" dc-uuid="{dc}">'
        f'<configuration><crm_config/><nodes>{NODES}</nodes><resources/><constraints/>'
        f'<rsc_defaults><meta_attributes id="rsc-options"><nvpair id="rsc-options-resource-stickiness" '
        f'name="resource-stickiness" value="{stickiness}"/></meta_attributes></rsc_defaults>'
        f'</configuration><status/></cib>')


class Node(LiveCluster):
    """kamailio01 (node id 1) as its tools would answer: the CIB, votequorum, the DC in the CIB."""

    def __init__(self, live: etree._Element) -> None:
        super().__init__()
        self.cib, self.quorate, self.patches, self.head_reads = live, True, 0, 0
        self.on_patch: Callable[[Node], None] = lambda node: None  # a patch's effect, or its refusal
        self.quorum_error: CommandError | None = None

    def read_cib(self, scope: str | None = None) -> etree._Element:
        return self.cib

    def read_cib_head(self) -> etree._Element:
        self.head_reads += 1
        return etree.Element("cib", {str(k): str(v) for k, v in self.cib.attrib.items()})

    def quorum(self) -> QuorumInfo:
        if self.quorum_error is not None:
            raise self.quorum_error
        return QuorumInfo(quorate=self.quorate, node_id=1)

    def patch(self, patch_xml: str) -> None:
        self.patches += 1
        self.on_patch(self)

    def status(self) -> ClusterStatus:
        return ClusterStatus(dc="kamailio01", quorate=True, nodes=[], resources=[], failed_actions=[])


WRITER = WriteGuard(node="kamailio01")


def test_no_patch_once_the_partition_has_lost_quorum() -> None:
    node = Node(cib("100"))
    node.quorate = False  # votequorum knows first; the CIB still says have-quorum="1"
    with pytest.raises(LostLeadership) as exc:
        write_configuration(node, cib("150"), guard=WRITER)
    assert exc.value.reason == "LostQuorum" and exc.value.attempt == 1
    assert "without quorum" in str(exc.value) and "votequorum quorate: no" in str(exc.value)
    assert node.patches == 0


def test_the_cib_saying_no_quorum_is_enough_too() -> None:
    node = Node(cib("100", have_quorum="0"))  # the agent's record of a revision: a marker-only write
    with pytest.raises(LostLeadership) as exc:
        write_marker_only(node, lambda m: m.model_copy(update={"revision": "a" * 40}), guard=WRITER)
    assert exc.value.reason == "LostQuorum" and node.patches == 0


def test_a_conflict_retry_is_checked_again_before_its_patch() -> None:
    node = Node(cib("100"))

    def hand_edit_then_partition(n: Node) -> None:
        # The first patch races a hand edit (the CIB refuses it); meanwhile the node is cut off.
        n.cib, n.quorate = cib("7", epoch=11), False
        raise CommandError(["cibadmin", "--patch"], CIB_OLDER_RC,
                           "Update was older than existing configuration")

    node.on_patch = hand_edit_then_partition
    with pytest.raises(LostLeadership) as exc:
        write_configuration(node, cib("150"), guard=WRITER)
    assert exc.value.attempt == 2 and node.patches == 1  # the retry was never sent


def test_a_node_that_is_not_the_dc_any_more_does_not_write() -> None:
    node = Node(cib("100", dc="2"))
    with pytest.raises(LostLeadership) as exc:
        write_configuration(node, cib("150"), guard=WRITER)
    assert exc.value.reason == "NotWriter" and "not the DC any more" in str(exc.value)
    assert exc.value.seen is not None and exc.value.seen.dc_id == "2"
    assert node.patches == 0


def test_an_operator_verb_needs_quorum_not_the_dc() -> None:
    node = Node(cib("100", dc="2"))
    wanted = Marker(suspended=True)
    node.on_patch = lambda n: setattr(n, "cib", with_marker(n.cib, wanted))
    assert write_marker_only(node, lambda m: m.model_copy(update={"suspended": True}),
                             guard=QUORUM_ONLY).suspended
    assert node.patches == 1 and node.head_reads == 0  # votequorum only: no CIB query for the DC


def test_unconfirmed_quorum_writes_nothing() -> None:
    node = Node(cib("100"))
    node.quorum_error = CommandError(["corosync-quorumtool", "-s"], 1, "Cannot initialize QUORUM service")
    with pytest.raises(LostLeadership) as exc:
        write_configuration(node, cib("150"), guard=WRITER)
    assert exc.value.reason == "LostQuorum" and "could not be confirmed" in str(exc.value)
    assert node.patches == 0


def test_a_rollback_that_lost_the_race_is_recorded_as_skipped(tmp_path: Path) -> None:
    """`ha-gitops rollback` saw a quorate cluster (crm_mon), then quorum went before its patch."""
    node = Node(cib("150"))
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    config = etree.tostring(cib("100").find("configuration")).decode()
    target = store.append(NewEvent(node="kamailio01", kind="apply", outcome="success", summary="150",
                                   config_before=config))
    node.quorate = False
    r = Reconciler(node="kamailio01", cluster=node, store=store)
    with pytest.raises(PassFailed) as exc:
        r.rollback(target.id)
    assert (exc.value.failure.stage, exc.value.failure.reason) == ("write", "LostQuorum")
    ev = store.get(exc.value.failure.event or 0)
    assert (ev.kind, ev.outcome) == ("error", "failure")
    assert ev.summary.startswith(f"rollback to before event {target.event_id[:8]} (#{target.id} on "
                                 "kamailio01) skipped: this node's partition had lost quorum")
    assert ev.summary.endswith("nothing written")
    assert ev.details["target_event_id"] == target.event_id
    assert ev.details["skipped"] and ev.details["reason"] == "LostQuorum" and not ev.patch
    assert [e.kind for e in store.list(limit=10)] == ["error", "apply"]  # no rollback recorded as done
    assert node.patches == 0 and read_marker(node.cib) == Marker()  # marker untouched, no pin
