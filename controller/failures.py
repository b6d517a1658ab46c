"""How a pass fails: the stage that failed and a reason from a closed list (Flux's `<Stage>Failed`).

Every failure of a pass ends in an audit event whose details carry `stage` and `reason`; `status` shows
the last one, and metrics count them by reason. A new way to fail gets a name here first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Stage = Literal["fetch", "load", "observe", "predict", "stop-first", "write", "verify", "auto-rollback",
                "rollout", "record", "pass"]
FailureReason = Literal[
    "FetchFailed",         # the git source could not be read
    "ObserveFailed",       # the live cluster could not be read
    "StopFirstFailed",     # resources removed from git did not stop (or the stop could not be written)
    "WriteFailed",         # the CIB refused the patch, or did not converge
    "HealthCheckFailed",   # the cluster was unhealthy after the write: rolled back
    "AutoRollbackFailed",  # restoring the previous configuration failed: the revision is marked bad
    "RolloutFailed",       # a corosync.conf rollout step failed
    "RolloutAbandoned",    # a node's agent took no step of a corosync.conf rollout: put back everywhere
    "AuditStoreFailed",    # the audit trail refuses writes (full disk, read-only): nothing is written
    "LostQuorum",          # a write was skipped: the cluster was not quorate any more just before it
    "NotWriter",           # a write was skipped: this node was not the DC any more just before it
    "PassFailed",          # anything else a pass raised (a bug, a tool missing)
]
REASON_OF_STAGE: dict[Stage, FailureReason] = {
    "fetch": "FetchFailed", "observe": "ObserveFailed", "stop-first": "StopFirstFailed",
    "write": "WriteFailed", "verify": "HealthCheckFailed", "auto-rollback": "AutoRollbackFailed",
    "rollout": "RolloutFailed", "record": "AuditStoreFailed",
}


class Failure(BaseModel):
    stage: Stage
    reason: FailureReason
    message: str
    event: int | None = None  # the audit event that records it

    @classmethod
    def of(cls, stage: Stage, message: str, event: int | None = None,
           reason: FailureReason | None = None) -> Failure:
        """The stage's own reason, unless the failure says better why (a skipped write: LostQuorum)."""
        return cls(stage=stage, reason=reason or REASON_OF_STAGE.get(stage, "PassFailed"), message=message,
                   event=event)

    def details(self) -> dict[str, str]:
        return {"stage": self.stage, "reason": self.reason}
