"""The writer's rules on the nodes' secrets signals, and the plan's `secret changed|unchanged` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.cib.marker import Marker
from controller.cluster.models import ClusterStatus, NodeState
from controller.decide import DecideInput, Decision, decide
from controller.desired.secret_gate import error_value, store_digest
from controller.desired.state import DesiredState
from controller.plan import cib_plan, render_plan_text
from controller.secrets.model import store_sign
from tests.secrets.secretstestlib import NODES, VALUE, folder, live_of, load

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _status(offline: tuple[str, ...] = ()) -> ClusterStatus:
    nodes = [NodeState(name=n, id=str(182190357 + i), online=n not in offline, standby=False)
             for i, n in enumerate(NODES)]
    return ClusterStatus(dc=NODES[0], quorate=True, nodes=nodes, resources=[], failed_actions=[])


def _decide(state: DesiredState, signals: dict[str, str], *, with_resource: bool = False,
            **kw: Any) -> Decision:
    live = live_of(state, with_resource=with_resource, signals=signals)
    args: dict[str, Any] = {"revision": "c" * 40, "state": state, "findings": [],
                            "cib": cib_plan(state, live), "live": live, "status": _status(),
                            "marker": Marker(revision="b" * 40, event="e"),
                            "now": NOON, "live_corosync": None, "impact": None}
    args.update(kw)
    if args["impact"] is None:
        from controller.impact import Impact
        args["impact"] = Impact()
    return decide(DecideInput(**args))


def test_the_cib_change_waits_until_every_online_node_stored_the_secrets(tmp_path: Path) -> None:
    state = load(folder(tmp_path))
    want = store_digest(state.secret_params)
    assert want is not None
    d = _decide(state, {NODES[0]: want, NODES[1]: want, NODES[2]: "0" * 16})
    assert d.verdict == "wait" and d.codes == ["secrets-pending"]
    assert NODES[2] in d.reasons[0].message and NODES[1] not in d.reasons[0].message
    assert _decide(state, dict.fromkeys(NODES, want)).verdict == "apply"
    # an offline node is not waited for (it stores on its return, before it runs anything)
    assert _decide(state, {NODES[0]: want, NODES[1]: want}, status=_status(offline=(NODES[2],))).verdict \
        == "apply"


def test_an_observer_does_not_wait_for_secrets(tmp_path: Path) -> None:
    state = load(folder(tmp_path))
    assert _decide(state, {}, role="observer").codes == ["not-writer"]


def test_a_node_that_cannot_decrypt_refuses_the_revision_whole(tmp_path: Path) -> None:
    state = load(folder(tmp_path))
    want = store_digest(state.secret_params)
    assert want is not None and state.secrets_file is not None
    bad = error_value(state.secrets_file, "not-recipient")
    d = _decide(state, {NODES[0]: want, NODES[1]: bad, NODES[2]: want})
    assert d.verdict == "refuse" and d.codes == ["secrets"]
    assert f"node {NODES[1]} cannot decrypt secrets.age" in d.reasons[0].message
    assert "not one of secrets.age's recipients" in d.reasons[0].message
    # an error about an older secrets.age is not this revision's
    assert _decide(state, {NODES[0]: want, NODES[1]: error_value("f" * 16, "no-identity"),
                           NODES[2]: want}).codes == ["secrets-pending"]


def test_the_plan_says_secret_changed_or_unchanged_never_the_value(tmp_path: Path) -> None:
    state = load(folder(tmp_path))
    want = store_digest(state.secret_params)
    assert want is not None
    signals = dict.fromkeys(NODES, want)
    changed = _decide(state, signals, secret_store={("d1", "passwd"): None})
    text = render_plan_text(changed.plan)
    assert "d1: passwd: secret changed" in text and VALUE not in text
    assert VALUE not in changed.model_dump_json()
    same = _decide(state, signals, with_resource=True, secret_store={("d1", "passwd"): store_sign(VALUE)})
    text = render_plan_text(same.plan)
    assert "d1: passwd: unchanged" in text and same.verdict == "no-change"
