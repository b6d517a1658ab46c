"""One constructor of the reconcile machinery, used by the agent and by every CLI verb.

What differs between callers is passed in, never rebuilt: the agent adds the corosync.conf rollout
(agents on every node roll it out), a CLI verb runs without one (and so refuses a revision whose
corosync.conf would need it, up front). Validation on a node checks agents and `corosync -t` there.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.audit.store import AuditStore
from controller.cluster.adapter import LiveCluster
from controller.desired.crm import CrmRunner
from controller.desired.findings import Finding
from controller.desired.state import DesiredState
from controller.desired.validate import validate_state
from controller.reconcile import Reconciler, Validator
from controller.settings import AgentSettings


def node_validator(settings: AgentSettings, cluster: LiveCluster) -> Validator:
    """Validation as it must be on a node: the agents that will run (substitutions applied) exist here,
    and `corosync -t` accepts the file next to this node's /etc/corosync. Off the cluster (a snapshot)
    the agents are the node's, as the snapshot lists them."""
    agents = cluster.agent_catalog()
    corosync_check = cluster.corosync_check()

    def validate(state: DesiredState) -> list[Finding]:
        return validate_state(state, agents=agents, substitutions=settings.substitute,
                              corosync_check=corosync_check)

    return validate


def build_reconciler(settings: AgentSettings, *, cluster: LiveCluster | None = None,
                     store: AuditStore | None = None, rollout: bool = False,
                     wake: Callable[[str], None] | None = None, crm: CrmRunner | None = None,
                     observer_crm: CrmRunner | None = None) -> Reconciler:
    cluster = cluster or LiveCluster()
    store = store or AuditStore(settings.audit_url)
    rec = Reconciler(node=settings.node_name, cluster=cluster, store=store, drift_mode=settings.drift_mode,
                     substitutions=settings.substitute,
                     shared_audit=settings.audit_url.startswith("postgres"), crm=crm,
                     observer_crm=observer_crm, validator=node_validator(settings, cluster),
                     age_identity=settings.age_identity)
    rec.notify_targets = settings.notify
    if rollout:
        from controller.rollout import CorosyncRollout

        rec.corosync = CorosyncRollout(node=settings.node_name, cluster=cluster, store=store,
                                       service_command=settings.service_command, wake=wake)
        rec.corosync.notify_targets = settings.notify
    return rec
