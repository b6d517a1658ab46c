"""Is the cluster healthy after a change? (pure: two status snapshots in, problems out)

Healthy means: quorum kept, every resource in its target role, no new failed actions, no node newly
unclean. Compared with the snapshot taken before the change, so what was already broken is not blamed on
the change.
"""

from __future__ import annotations

from pydantic import BaseModel

from controller.observed import ClusterStatus, ResourceState

ACTIVE_ROLES = {"Started", "Promoted", "Unpromoted", "Master", "Slave"}


class HealthProblem(BaseModel):
    kind: str  # quorum | resource | failed-action | unclean | settle | fenced
    subject: str
    message: str
    node: str | None = None  # where, when it is about one node
    resource: str | None = None  # for a failed action: its resource


def _failure_keys(st: ClusterStatus) -> set[tuple[str, str, int | None, str | None]]:
    return {(f.op_key, f.node, f.call, f.last_rc_change) for f in st.failed_actions}


def health_problems(before: ClusterStatus, after: ClusterStatus) -> list[HealthProblem]:
    problems: list[HealthProblem] = []
    if before.quorate and not after.quorate:
        problems.append(HealthProblem(kind="quorum", subject="cluster", message="quorum lost"))
    was_unclean = {n.name for n in before.nodes if n.unclean}
    for n in after.nodes:
        if n.unclean and n.name not in was_unclean:
            problems.append(HealthProblem(kind="unclean", subject=n.name, node=n.name,
                                          message=f"node {n.name} is unclean"))
    old = _failure_keys(before)
    for f in after.failed_actions:
        if (f.op_key, f.node, f.call, f.last_rc_change) not in old:
            why = f.exitreason or f.exitstatus
            problems.append(HealthProblem(kind="failed-action", subject=f.op_key, node=f.node,
                                          resource=f.resource,
                                          message=f"{f.op_key} failed on {f.node}: {why}"))
    # A resource (clone instances together) should be active somewhere unless its target role says not.
    by_id: dict[str, list[ResourceState]] = {}
    for r in after.resources:
        by_id.setdefault(r.id, []).append(r)
    for rid, instances in by_id.items():
        target = next((r.target_role for r in instances if r.target_role), None)
        if target in ("Stopped", "stopped"):
            continue
        if any(r.orphaned or not r.managed for r in instances):
            continue
        if not any(r.role in ACTIVE_ROLES and r.active for r in instances):
            problems.append(HealthProblem(kind="resource", subject=rid,
                                          message=f"{rid} is not running (target role "
                                                  f"{target or 'Started'}, role {instances[0].role})"))
    return problems
