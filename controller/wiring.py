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
from controller.reconcile import Reconciler
from controller.settings import AgentSettings


def build_reconciler(settings: AgentSettings, *, cluster: LiveCluster | None = None,
                     store: AuditStore | None = None, rollout: bool = False,
                     wake: Callable[[str], None] | None = None, crm: CrmRunner | None = None,
                     observer_crm: CrmRunner | None = None) -> Reconciler:
    cluster = cluster or LiveCluster()
    store = store or AuditStore(settings.audit_url)
    rec = Reconciler(node=settings.node_name, cluster=cluster, store=store, drift_mode=settings.drift_mode,
                     substitutions=settings.substitute,
                     shared_audit=settings.audit_url.startswith("postgres"), crm=crm,
                     observer_crm=observer_crm)
    if rollout:
        from controller.rollout import CorosyncRollout

        rec.corosync = CorosyncRollout(node=settings.node_name, cluster=cluster, store=store,
                                       service_command=settings.service_command, wake=wake)
    return rec
