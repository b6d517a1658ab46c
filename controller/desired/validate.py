"""Validate a desired-state folder: load it, run Pacemaker's checks and the cross-checks.

Order: load (parse corosync.conf, cluster.toml, convert/parse the CIB - hard errors stop here),
then crm_verify (schema + configuration), then the corosync/CIB cross-checks.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from controller.desired.checks import cross_check
from controller.desired.findings import DesiredStateError, Finding
from controller.desired.state import DesiredState, load_desired
from controller.desired.verify import verify_cib
from controller.errors import InputError


class ValidationReport(BaseModel):
    path: str
    findings: list[Finding]
    digest: str | None = None

    @property
    def valid(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def validate_state(state: DesiredState) -> list[Finding]:
    findings = list(state.load_messages)
    findings += verify_cib(state)
    findings += cross_check(state)
    return findings


def validate_desired(path: str | Path) -> ValidationReport:
    try:
        state = load_desired(path)
    except DesiredStateError as exc:
        return ValidationReport(path=str(path), findings=exc.findings)
    except InputError as exc:
        return ValidationReport(path=str(path), findings=[Finding.from_error(exc, str(path))])
    findings = validate_state(state)
    order = {"error": 0, "warning": 1}
    findings.sort(key=lambda f: (order[f.severity], f.file, f.line or 0))
    return ValidationReport(path=str(path), findings=findings, digest=state.digest)
