"""`plan --base REV`: the desired folder against itself at another revision, no cluster involved.

Both folders are loaded as a pass loads them (crmsh for cib.crm), the head validated as `validate` does
here (agents and `corosync -t` of this machine when installed), REV's configuration (substitutions
applied the same way) taken as the "live" CIB and its corosync.conf as the live file; the pure
`controller.decide.decide_against_base` says the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from controller.decide import Decision, decide_against_base
from controller.desired.crm import CrmRunner
from controller.desired.findings import Finding
from controller.desired.load import load_desired
from controller.desired.state import DesiredState, DesiredStateError
from controller.desired.substitute import Substitution
from controller.errors import HaGitopsError
from controller.plan import CibPlan, cib_plan, effective_desired

Validator = Callable[[DesiredState], list[Finding]]


def plan_against_base(head: Path, base: Path, *, revision: str | None, base_label: str, validator: Validator,
                      substitutions: Sequence[Substitution] = (), now: datetime,
                      crm: CrmRunner | None = None) -> Decision:
    try:
        base_state = load_desired(base, crm=crm)
    except HaGitopsError as exc:
        raise HaGitopsError(f"the desired folder at {base_label} does not load, so there is nothing to "
                            f"compare with: {exc}") from exc
    state: DesiredState | None = None
    findings: list[Finding] = []
    cib: CibPlan | None = None
    try:
        state = load_desired(head, crm=crm)
    except DesiredStateError as exc:
        findings = list(exc.findings)
    except HaGitopsError as exc:
        findings = [Finding(severity="error", file=str(head), message=str(exc))]
    if state is not None:
        findings = validator(state)
        base_cib, _ = effective_desired(base_state, substitutions)
        try:
            cib = cib_plan(state, base_cib, substitutions)
        except HaGitopsError as exc:
            findings.append(Finding(severity="error", file=str(state.cib_file), message=str(exc)))
    return decide_against_base(revision=revision, base=base_label, state=state, findings=findings, cib=cib,
                               base_corosync=base_state.corosync_text, now=now)
