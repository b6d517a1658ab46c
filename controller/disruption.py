"""The disruption policy of cluster.toml applied to a predicted impact (pure: `now` is an argument).

Outside a maintenance window a change may not stop, restart, move or demote a protected resource
(or a member of a protected group/clone), may restart/move/stop at most `max_restarts` resources, delete
at most `max_deletions`, and fence no node unless `allow_fencing`.
Inside a window everything is allowed. A corosync cluster-restart change needs
`allow_cluster_restart` and an open window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from controller.cib.render import ObjectChange
from controller.corosync.diff import ChangeClass
from controller.desired.policy import ClusterPolicy
from controller.desired.policy_sections import MaintenanceWindow
from controller.errors import HaGitopsError
from controller.impact import DISRUPTIVE, Impact, NodeAction, ResourceImpact

Rule = Literal["protect", "max_restarts", "max_deletions", "allow_fencing", "allow_cluster_restart",
               "maintenance_window"]
# A deletion stops its resource: a stop disrupts the service as much as a restart does.
_COUNTED: frozenset[str] = frozenset({"restart", "move", "stop"})
# crm_simulate's node actions other than a clean shutdown are fencing (reboot, off, stonith).
_NOT_FENCING: frozenset[str] = frozenset({"shutdown"})


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: Rule
    resource: str | None = None
    action: str | None = None  # the predicted action (restart, move, ...) or the change class
    nodes: list[str] = []
    reason: str | None = None  # Pacemaker's reason for the action
    message: str

    def __str__(self) -> str:
        return self.message


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware (maintenance windows have time zones)")
    return now


def window_open(window: MaintenanceWindow, now: datetime) -> bool:
    """Open when some start time s satisfies s <= now < s + duration.

    The earliest start at or after now - duration is that s if any is: asking the trigger for it
    avoids walking cron backwards (APScheduler 3 can only search forwards).
    """
    now = _aware(now)
    start = window.trigger().get_next_fire_time(None, now - window.duration)
    return start is not None and start <= now < start + window.duration


def in_maintenance_window(windows: Sequence[MaintenanceWindow], now: datetime) -> MaintenanceWindow | None:
    """The first window open at `now` (timezone-aware), or None."""
    return next((w for w in windows if window_open(w, now)), None)


def _describe(r: ResourceImpact) -> str:
    where = " -> ".join(r.nodes)
    return (f"{r.action} {r.resource}" + (f" (in {r.parent})" if r.parent else "")
            + (f" on {where}" if where else "") + (f" due to {r.reason}" if r.reason else ""))


def fencing(impact: Impact) -> list[NodeAction]:
    """The node actions of a prediction that fence a node."""
    return [n for n in impact.node_actions if n.task.lower() not in _NOT_FENCING]


def check_disruption(impact: Impact, policy: ClusterPolicy, now: datetime,
                     changes: Sequence[ObjectChange] = ()) -> list[Violation]:
    """Every rule the predicted impact (and the CIB changes) break at `now`; empty inside a window."""
    if in_maintenance_window(policy.maintenance_window, _aware(now)) is not None:
        return []
    rules = policy.disruption
    out: list[Violation] = []
    if not rules.allow_fencing:
        for n in fencing(impact):
            out.append(Violation(rule="allow_fencing", action=n.task, nodes=[n.node], reason=n.reason,
                                 message=f"{n.task} {n.node} predicted"
                                         + (f" due to {n.reason}" if n.reason else "")
                                         + ": fencing is allowed only inside a maintenance window "
                                           "([disruption] allow_fencing)"))
    removed = [c.id for c in changes if c.kind == "resource" and c.action == "removed"]
    if rules.max_deletions is not None and len(removed) > rules.max_deletions:
        out.append(Violation(rule="max_deletions", action="delete",
                             message=f"{len(removed)} resource(s) deleted ({', '.join(removed)}), at most "
                                     f"{rules.max_deletions} allowed outside a maintenance window"))
    if rules.protect:
        for r in impact.resources:
            if r.action in DISRUPTIVE and r.covers(rules.protect):
                which = next(p for p in rules.protect if p in (r.resource, r.base_id, *r.containers))
                out.append(Violation(
                    rule="protect", resource=r.resource, action=r.action, nodes=r.nodes, reason=r.reason,
                    message=f"{_describe(r)}: {which} is protected outside a maintenance window"))
    if rules.max_restarts is not None:
        counted = [r for r in impact.resources if r.action in _COUNTED]
        if len(counted) > rules.max_restarts:
            for r in counted:
                out.append(Violation(
                    rule="max_restarts", resource=r.resource, action=r.action, nodes=r.nodes,
                    reason=r.reason,
                    message=f"{_describe(r)}: {len(counted)} restarts/moves/stops predicted, at most "
                            f"{rules.max_restarts} allowed outside a maintenance window"))
    return out


def check_corosync_restart(change_class: ChangeClass | None, policy: ClusterPolicy,
                           now: datetime) -> Violation | None:
    """A corosync change that needs a full cluster restart: allowed by policy and only in a window."""
    _aware(now)
    if change_class != "cluster-restart":
        return None
    if not policy.disruption.allow_cluster_restart:
        return Violation(rule="allow_cluster_restart", action=change_class,
                         message="this corosync.conf change needs a restart of the whole cluster; "
                                 "cluster.toml does not allow that ([disruption] allow_cluster_restart)")
    if in_maintenance_window(policy.maintenance_window, now) is None:
        names = ", ".join(w.name for w in policy.maintenance_window) or "none defined"
        return Violation(rule="maintenance_window", action=change_class,
                         message="this corosync.conf change needs a restart of the whole cluster, "
                                 f"allowed only inside a maintenance window ({names}); none is open "
                                 f"at {now.isoformat()}")
    return None


class DisruptionRefused(HaGitopsError):
    """A change the policy refuses; the message and audit_detail() carry the prediction."""

    def __init__(self, violations: Sequence[Violation], impact: Impact | None = None) -> None:
        self.violations = list(violations)
        self.impact = impact
        lines = ["change refused by the disruption policy (cluster.toml):"]
        lines += [f"  - [{v.rule}] {v.message}" for v in self.violations]
        if impact is not None:
            lines.append(impact.text())
        super().__init__("\n".join(lines))

    def audit_detail(self) -> dict[str, Any]:
        return {"violations": [v.model_dump(mode="json") for v in self.violations],
                "impact": self.impact.model_dump(mode="json") if self.impact is not None else None}


def enforce(impact: Impact | None, policy: ClusterPolicy, now: datetime, *,
            corosync_change: ChangeClass | None = None, changes: Sequence[ObjectChange] = ()) -> None:
    """Raise DisruptionRefused when the change breaks any rule; return when it may proceed."""
    violations = check_disruption(impact, policy, now, changes) if impact is not None else []
    corosync = check_corosync_restart(corosync_change, policy, now)
    if corosync is not None:
        violations.append(corosync)
    if violations:
        raise DisruptionRefused(violations, impact)
