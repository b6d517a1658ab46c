"""Which resource and fence agents exist on this node, answered by the installed Pacemaker.

Measured on Pacemaker 2.1.5 (Debian 12):
- `crm_resource --show-metadata CLASS[:PROVIDER]:TYPE` exits 0 with the agent's XML when it exists
  and 105 (CRM_EX_NOSUCH, "No such object") when it does not, for ocf, lsb and stonith alike
  (`stonith:external/ssh` and the fence_* agents are asked the same way, no daemon needed); about
  20 ms per agent;
- `systemd:` agents are looked up over D-Bus: where PID 1 is not systemd (containers, the sandbox
  nodes, a build machine) every unit answers 105 and `crm_resource --list-standards` does not list
  `systemd` at all. Such agents cannot be checked there: None, with the reason;
- on a systemd machine `crm_resource --list-agents systemd` lists the service units (without
  `.service`), which is asked once.

Answers that an agent exists are kept for the life of the process (an installed agent does not go
away); "missing" is asked again each time, so installing the agent is seen without a restart.
"""

from __future__ import annotations

import shutil
import threading

from controller.cluster.runner import ToolRunner
from controller.command import Result
from controller.errors import CommandError
from controller.snapshot import SnapshotAgents

# crm_resource's exit code for "no such object" (CRM_EX_NOSUCH)
NO_SUCH_AGENT = 105
AGENT_TIMEOUT = 30.0


class PacemakerAgents:
    """An AgentCatalog (controller.desired.agents) backed by crm_resource on this node, or inside a
    node through the runner's prefix."""

    def __init__(self, runner: ToolRunner | None = None, *, timeout: float = AGENT_TIMEOUT) -> None:
        self.runner = runner or ToolRunner()
        self.timeout = timeout
        self._lock = threading.Lock()
        self._present: set[tuple[str, str | None, str]] = set()
        self._standards: list[str] | None = None
        self._systemd_units: set[str] | None = None
        self._why: dict[tuple[str, str | None, str], str] = {}

    # ---- AgentCatalog

    def exists(self, standard: str, provider: str | None, type: str) -> bool | None:
        key = (standard, provider, type)
        with self._lock:
            if key in self._present:
                return True
        answer, why = self._ask(standard, provider, type)
        with self._lock:
            if answer:
                self._present.add(key)
            elif why:
                self._why[key] = why
        return answer

    def why_unknown(self, standard: str, provider: str | None, type: str) -> str:
        with self._lock:
            return self._why.get((standard, provider, type), "the agent catalog gave no answer")

    # ---- the questions

    def _run(self, argv: list[str]) -> Result:
        return self.runner.run(argv, timeout=self.timeout, check=False)

    def standards(self) -> list[str]:
        """The resource classes this Pacemaker offers here (`crm_resource --list-standards`)."""
        if self._standards is None:
            r = self.runner.run(["crm_resource", "--list-standards"], timeout=self.timeout)
            self._standards = [w.strip() for w in r.stdout.splitlines() if w.strip()]
        return self._standards

    def _systemd(self) -> set[str]:
        if self._systemd_units is None:
            r = self._run(["crm_resource", "--list-agents", "systemd"])
            self._systemd_units = {u.strip() for u in r.stdout.splitlines() if u.strip()} \
                if r.returncode == 0 else set()
        return self._systemd_units

    def _metadata(self, agent: str) -> tuple[bool | None, str]:
        r = self._run(["crm_resource", "--show-metadata", agent])
        if r.returncode == 0:
            return True, ""
        if r.returncode == NO_SUCH_AGENT:
            return False, ""
        detail = (r.stderr or r.stdout).strip()
        return None, f"crm_resource --show-metadata {agent} exited {r.returncode}: {detail}"

    def _ask(self, standard: str, provider: str | None, type_: str) -> tuple[bool | None, str]:
        try:
            standards = self.standards()
            has_systemd = "systemd" in standards
            if standard == "systemd":
                if not has_systemd:
                    return None, self._no_systemd(standards)
                unit = type_.removesuffix(".service")
                if unit in self._systemd():
                    return True, ""
                if "@" in unit or "." in unit:  # templates and other unit kinds are not listed
                    return self._metadata(f"systemd:{type_}")
                return False, ""
            if standard == "service":
                # Pacemaker resolves service: to systemd when it runs, else to lsb
                if has_systemd and type_.removesuffix(".service") in self._systemd():
                    return True, ""
                found, why = self._metadata(f"lsb:{type_}")
                if found or has_systemd:
                    return found, why
                return None, (f"no lsb script {type_!r} here, and it may be a systemd unit: "
                              + self._no_systemd(standards))
            if standard not in standards:
                return False, ""
            return self._metadata(":".join(p for p in (standard, provider, type_) if p))
        except CommandError as exc:  # not installed, timed out: cannot tell; say so in full
            what = "timed out" if exc.returncode is None and exc.timeout else f"failed ({exc.returncode})"
            return None, f"{' '.join(exc.argv)} {what}: {(exc.stderr or exc.stdout).strip()}"

    # ---- the whole list, for a snapshot (plan off the cluster checks agents against it)

    def _listed(self, what: str) -> list[str]:
        r = self._run(["crm_resource", "--list-agents", what])
        return sorted({a.strip() for a in r.stdout.splitlines() if a.strip()}) if r.returncode == 0 else []

    def inventory(self) -> SnapshotAgents:
        """Every agent this Pacemaker lists, by standard (and OCF provider)."""
        standards = self.standards()
        r = self._run(["crm_resource", "--list-ocf-providers"])
        providers = [p.strip() for p in r.stdout.splitlines() if p.strip()] if r.returncode == 0 else []
        return SnapshotAgents(
            standards=standards, ocf={p: self._listed(f"ocf:{p}") for p in providers},
            lsb=self._listed("lsb") if "lsb" in standards else [],
            stonith=self._listed("stonith") if "stonith" in standards else [],
            systemd=sorted(self._systemd()) if "systemd" in standards else None)

    @staticmethod
    def _no_systemd(standards: list[str]) -> str:
        return ("Pacemaker here offers no systemd class (crm_resource --list-standards: "
                f"{', '.join(standards) or 'none'}): systemd is not PID 1 on this machine; "
                "the nodes check it")


class SnapshotAgentCatalog(PacemakerAgents):
    """The same questions as PacemakerAgents, answered from the lists a node's snapshot holds: off the
    cluster, an agent missing on the node is missing here too, whatever this machine has installed."""

    def __init__(self, agents: SnapshotAgents) -> None:
        super().__init__(ToolRunner())
        self.agents = agents

    def _run(self, argv: list[str]) -> Result:
        raise AssertionError(f"a snapshot's agent catalog runs nothing ({' '.join(argv)})")

    def standards(self) -> list[str]:
        return list(self.agents.standards)

    def _systemd(self) -> set[str]:
        return set(self.agents.systemd or [])

    def _metadata(self, agent: str) -> tuple[bool | None, str]:
        standard, _, rest = agent.partition(":")
        provider, type_ = rest.split(":", 1) if standard == "ocf" and ":" in rest else (None, rest)
        return self.agents.has(standard, provider, type_), ""


def local_agents() -> PacemakerAgents | None:
    """What `ha-gitops validate` uses: this machine's Pacemaker when it is installed, else no check."""
    return PacemakerAgents() if shutil.which("crm_resource") else None
