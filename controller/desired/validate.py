"""Validate a desired-state folder: load it, run Pacemaker's and corosync's checks and our own.

Order: load (parse corosync.conf, cluster.toml, convert/parse the CIB - hard errors stop here),
then crm_verify (schema + configuration), the corosync.conf checks (unknown keys, the nodelist),
the corosync/CIB cross-checks, and, when the caller gives them, the checks that need the node's
tools: every agent exists (an `AgentCatalog`) and `corosync -t` accepts the file (a
`CorosyncCheck`). Those two are parameters so the core stays usable without a cluster machine:
controller.cluster.agents and controller.cluster.corosync_test provide the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from controller.desired.agents import AgentCatalog, check_agents
from controller.desired.checks import check_corosync, cross_check
from controller.desired.crm import CrmRunner
from controller.desired.findings import DesiredStateError, Finding
from controller.desired.load import load_desired
from controller.desired.state import DesiredState
from controller.desired.substitute import Substitution, substitute
from controller.desired.verify import verify_cib
from controller.errors import InputError

# (corosync.conf text, file name to report) -> findings; controller.cluster.corosync_test.CorosyncTest
CorosyncCheck = Callable[[str, str], Sequence[Finding]]

# crmsh's own opinion that an agent is missing on this host ("got no meta-data, does this RA exist?",
# "no such resource agent"): superseded by check_agents when that runs, so the rule has one verdict
_CRMSH_AGENT = re.compile(r"^crmsh: .*(got no meta-data|no such resource agent|does this RA exist)", re.I)


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


def validate_state(state: DesiredState, *, agents: AgentCatalog | None = None,
                   substitutions: Sequence[Substitution] = (),
                   corosync_check: CorosyncCheck | None = None) -> list[Finding]:
    """Every finding about a loaded desired state. `agents=None` skips the agent check;
    `substitutions` are applied before it (the agents that will really run are checked);
    `corosync_check=None` skips `corosync -t`."""
    findings = list(state.load_messages)
    if agents is not None:
        findings = [f for f in findings if not _CRMSH_AGENT.match(f.message)]
    findings += verify_cib(state)
    findings += check_corosync(state)
    findings += cross_check(state)
    if agents is not None:
        config, substituted = substitute(state.configuration(), list(substitutions))
        findings += check_agents(config, agents, file=str(state.cib_file), id_lines=state.id_lines,
                                 substituted=substituted)
    if corosync_check is not None:
        findings += corosync_check(state.corosync_text, str(state.corosync_file))
    return findings


def validate_desired(path: str | Path, *, agents: AgentCatalog | None = None,
                     substitutions: Sequence[Substitution] = (), corosync_check: CorosyncCheck | None = None,
                     crm: CrmRunner | None = None, identity: Path | None = None) -> ValidationReport:
    """Load and validate a folder; errors first, then warnings, each by file and line. `identity`
    decrypts secrets.age (None: `@secret:` references are not checked against it)."""
    try:
        state = load_desired(path, crm=crm, identity=identity)
    except DesiredStateError as exc:
        return ValidationReport(path=str(path), findings=exc.findings)
    except InputError as exc:
        return ValidationReport(path=str(path), findings=[Finding.from_error(exc, str(path))])
    findings = validate_state(state, agents=agents, substitutions=substitutions,
                              corosync_check=corosync_check)
    order = {"error": 0, "warning": 1}
    findings.sort(key=lambda f: (order[f.severity], f.file, f.line or 0))
    return ValidationReport(path=str(path), findings=findings, digest=state.digest)
