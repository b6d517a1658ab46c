"""The rollout executor against a fake cluster: the failures the sandbox cannot stage on demand.

A cluster restart after which every node comes back alone (in production: nodes whose
/etc/corosync/authkey differ, so none can read the others) must fail within `[rollout] rejoin_timeout`,
mark the revision bad and restore the previous file, instead of waiting for the others for ever.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from controller.audit.store import AuditStore
from controller.cib.marker import Marker, read_marker, with_marker
from controller.cluster.adapter import LiveCluster
from controller.cluster.models import ClusterStatus, NodeState, QuorumInfo
from controller.desired.policy import ClusterPolicy
from controller.rollout import (
    ATTR_APPLIED,
    ATTR_FILE,
    ATTR_RESTART,
    BACKUP_SUFFIX,
    CorosyncRollout,
    text_digest,
)

NODES = ["kamailio01", "kamailio02", "kamailio03"]
PREVIOUS = "totem {\nversion: 2\ntransport: knet\n}\n"
DESIRED = "totem {\nversion: 2\ntransport: knet\ncrypto_cipher: aes256\ncrypto_hash: sha256\n}\n"


class AloneAfterRestart(LiveCluster):
    """Three nodes; once this node restarts with the new file it sees only itself, without quorum.
    Restarting onto the previous file brings the others back."""

    def __init__(self, me: str, digest: str) -> None:
        super().__init__()
        self.me, self.alone, self.restarts = me, False, 0
        attrs = {ATTR_FILE: f"{digest}:cluster-restart", ATTR_RESTART: digest}
        nodes = "".join(f'<node id="{i}" uname="{n}"><instance_attributes id="na-{i}">'
                        + "".join(f'<nvpair id="na-{i}-{k}" name="{k}" value="{v}"/>'
                                  for k, v in attrs.items())
                        + "</instance_attributes></node>" for i, n in enumerate(NODES, 1))
        self.cib = etree.fromstring(f'<cib epoch="1" num_updates="0" admin_epoch="0"><configuration>'
                                    f'<crm_config/><nodes>{nodes}</nodes><resources/><constraints/>'
                                    f'</configuration><status/></cib>')
        self.attributes: dict[tuple[str, str], str] = {}

    def read_cib(self, scope: str | None = None) -> etree._Element:
        return self.cib

    def status(self) -> ClusterStatus:
        seen = [self.me] if self.alone else NODES
        return ClusterStatus(dc=self.me if self.alone else "kamailio03", quorate=not self.alone,
                             nodes=[NodeState(name=n, id=str(i), online=n in seen, standby=False)
                                    for i, n in enumerate(NODES, 1)], resources=[], failed_actions=[])

    def quorum(self) -> QuorumInfo:
        return QuorumInfo(quorate=not self.alone, total_votes=1 if self.alone else 3, quorum=2)

    def restart_stack(self, service_command: Any, **_: Any) -> None:
        self.restarts += 1
        self.alone = self.restarts == 1  # the new file: alone; the restored one: whole again

    def set_node_attribute(self, node: str, name: str, value: str, timeout: float = 30) -> None:
        self.attributes[(node, name)] = value


@pytest.fixture
def rollout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CorosyncRollout, AloneAfterRestart]:
    conf = tmp_path / "corosync.conf"
    conf.write_text(DESIRED)  # written in the rollout's first phase, before the restart request
    conf.with_name(conf.name + BACKUP_SUFFIX).write_text(PREVIOUS)
    cluster = AloneAfterRestart("kamailio01", text_digest(DESIRED))

    # The CIB write (and its guard) is cib_writer's, tested there.
    def mark(cl: AloneAfterRestart, update: Any, **_: Any) -> Marker:
        cl.cib = with_marker(cl.cib, update(read_marker(cl.cib)))
        return read_marker(cl.cib)

    monkeypatch.setattr("controller.rollout.write_marker_only", mark)
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    return CorosyncRollout(node="kamailio01", cluster=cluster, store=store, service_command=["systemctl"],
                           conf_path=conf), cluster


def step(r: CorosyncRollout, rejoin: float = 1.0) -> dict[str, Any]:
    base = ClusterPolicy()
    policy = base.model_copy(update={"rollout": base.rollout.model_copy(
        update={"rejoin_timeout": timedelta(seconds=rejoin)})})
    state = SimpleNamespace(corosync_text=DESIRED, policy=policy)
    return r.step(state=state, desired=None, revision="r" * 40,  # type: ignore[arg-type]
                  status=r.cluster.status(), leader=False, trigger="test").model_dump()


def test_cluster_restart_back_alone_fails_within_rejoin_timeout_and_restores(
        rollout: tuple[CorosyncRollout, AloneAfterRestart]) -> None:
    r, cluster = rollout
    res = step(r)
    assert res["action"] == "restart-self" and not res["ok"] and res["bad"]
    assert "timed out after 1s waiting for the cluster to form again with every node" in res["error"]
    assert "not quorate, online: kamailio01" in res["error"]  # what the node saw: the why
    assert read_marker(cluster.cib).corosync_bad == "r" * 40
    kinds = [(e.kind, e.outcome) for e in r.store.list(limit=10)]
    assert ("verify", "failure") in kinds and ("auto-rollback", "success") in kinds
    assert (cluster.me, ATTR_APPLIED) not in cluster.attributes  # never reported as running it

    res = step(r)  # the next pass: marked bad, so this node restores its previous file and restarts
    assert res["action"] == "restore" and res["ok"], res
    assert r.conf_path.read_text() == PREVIOUS and cluster.restarts == 2 and not cluster.alone
    assert cluster.attributes[(cluster.me, ATTR_APPLIED)] == text_digest(PREVIOUS)


def test_a_node_failing_after_another_marked_it_bad_records_its_verify_but_no_second_rollback(
        rollout: tuple[CorosyncRollout, AloneAfterRestart]) -> None:
    r, cluster = rollout
    real_restart = cluster.restart_stack

    def restart_while_another_node_fails_it(service_command: Any, **kw: Any) -> None:
        real_restart(service_command, **kw)
        cluster.cib = with_marker(cluster.cib, Marker(corosync_bad="r" * 40))  # kamailio02 was quicker

    cluster.restart_stack = restart_while_another_node_fails_it  # type: ignore[method-assign]
    res = step(r)
    assert not res["ok"] and res["bad"] and "timed out" in res["error"]
    kinds = [e.kind for e in r.store.list(limit=10)]
    assert kinds.count("verify") == 1 and "auto-rollback" not in kinds  # kamailio02's rollback is the one
    assert step(r)["action"] == "restore" and r.conf_path.read_text() == PREVIOUS
