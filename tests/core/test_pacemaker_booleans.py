"""One definition of a Pacemaker boolean, and the node order `plan` prints equals the rollout's."""

from __future__ import annotations

import pytest
from lxml import etree

from controller.cib.booleans import crm_boolean, crm_is_true
from controller.corosync.rollout_plan import PeerState, peers, rollout_order
from controller.plan import CibPlan, plan_of


@pytest.mark.parametrize("value", ["true", "on", "yes", "y", "1", "TRUE", "Yes", "On", "Y"])
def test_pacemaker_true_values(value: str) -> None:
    assert crm_is_true(value) and crm_boolean(value) is True


@pytest.mark.parametrize("value", ["false", "off", "no", "n", "0", "NO"])
def test_pacemaker_false_values(value: str) -> None:
    assert not crm_is_true(value) and crm_boolean(value) is False


@pytest.mark.parametrize("value", [None, "", "maybe", "2", " yes"])
def test_not_a_boolean(value: str | None) -> None:
    assert not crm_is_true(value) and crm_boolean(value) is None


def _cib(standby: dict[str, str]) -> etree._Element:
    nodes = "".join(
        f'<node id="{i}" uname="{name}">'
        + (f'<instance_attributes id="n{i}-ia"><nvpair id="n{i}-sb" name="standby" value="{v}"/>'
           "</instance_attributes>" if v else "")
        + "</node>"
        for i, (name, v) in enumerate(standby.items(), 1))
    return etree.fromstring(f"<cib><configuration><nodes>{nodes}</nodes></configuration></cib>")


@pytest.mark.parametrize("word", ["yes", "on", "true", "1", "Y"])
def test_plan_order_is_the_rollout_order_for_every_spelling_of_standby(word: str) -> None:
    cib = _cib({"kamailio01": "", "kamailio02": "off", "kamailio03": word})

    class _Status:
        def node(self, name: str) -> None:
            return None

    rollout = rollout_order(peers(cib, _Status(), {}))
    assert rollout == ["kamailio03", "kamailio01", "kamailio02"]
    # What `plan` prints (the plan's node order) is the order the rollout takes.
    assert make_plan_order(cib) == rollout


def test_rollout_order_sorts_by_name_within_standby() -> None:
    order = rollout_order([PeerState(name="b"), PeerState(name="a", standby=True), PeerState(name="c"),
                           PeerState(name="d", standby=True)])
    assert order == ["a", "d", "b", "c"]


def make_plan_order(cib: etree._Element) -> list[str]:
    plan = plan_of("c", None, CibPlan(wanted=cib, substituted=[], digest="d", changes=[]), [], None)
    return plan.node_order
