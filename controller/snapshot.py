"""A snapshot of one cluster node: everything `plan` reads from the cluster, in one file (pure).

`ha-gitops snapshot --out FILE` on a node writes it (controller/cluster/snapshot.py takes it);
`ha-gitops plan --live FILE --dir DIR` anywhere (a CI runner, no cluster running) reads it through a
read-only cluster (controller/cluster/snapshot.py `SnapshotCluster`), so the same pass and the same
`controller.decide.decide` run on the same inputs as `plan` on that node: the same verdict, reasons,
changes, impact and exit code. `ha-gitops preview` builds a sandbox from one.

The format (JSON, one object; `format` is bumped on any incompatible change, readers refuse others):

    {
      "kind": "ha-gitops-snapshot", "format": 1,
      "taken_at": "2026-12-02T02:40:00+00:00",        # UTC, when the node was read
      "node": "kamailio01",                           # the node it was taken on (its agent's node_name)
      "cib": "<cib ...>...<status>...</status></cib>",  # `cibadmin --query --local`: configuration AND
                                                        # status (the impact prediction needs both)
      "crm_mon": "<pacemaker-result ...>",            # `crm_mon --one-shot --inactive --output-as=xml`
      "quorum": "Quorum information ...",             # `corosync-quorumtool -s` (text; exit 0 or 2)
      "corosync_path": "/etc/corosync/corosync.conf",
      "corosync_conf": "totem { ... }",               # this node's file as it is; null: none there
      "cmap": {"runtime.config.totem.token": "3000"}, # `corosync-cmapctl runtime.config.totem.`: the
                                                      # timings corosync runs with (no keys: no secrets)
      "agents": {                                     # the agents installed on the node (validation off
        "standards": ["ocf", "lsb", "service", "stonith"],   # the node checks that they exist)
        "ocf": {"heartbeat": ["IPaddr2", ...], "pacemaker": ["Dummy", ...]},
        "lsb": ["corosync", ...], "stonith": ["external/ssh", "fence_xvm", ...],
        "systemd": null                               # the units; null: systemd is not PID 1 there
      },
      "versions": {"pacemaker": "2.1.5", "corosync": "3.1.7", "crmsh": "4.4.0", "ha_gitops": "0.1.0"},
      "settings": {"node_name": "kamailio01", "drift_mode": "correct",   # the node's agent.toml values
                   "substitute": [{"match_class": "systemd", ...}]},      # a plan depends on
      "last_write": {"event": "<uuid>", "config": "<configuration>..."}  # the configuration the marker's
                                                      # event left (the node's audit trail), or null
    }

Sensitivity: `cib` is the whole CIB, exactly what `cibadmin -Q` prints, clear-text resource parameters
(passwords) included; nothing is masked. Treat a snapshot like `cibadmin -Q` output (a CI secret or an
artifact with restricted access), until secrets move out of the CIB (issue 13). corosync.conf holds no
key (the authkey is a file, never read).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.cib.xml import parse_xml_bytes
from controller.desired.substitute import Substitution
from controller.errors import InputError
from controller.observed import ClusterStatus, QuorumInfo, parse_crm_mon, parse_quorumtool

FORMAT: Literal[1] = 1
KIND: Literal["ha-gitops-snapshot"] = "ha-gitops-snapshot"


class SnapshotAgents(BaseModel):
    """The resource and fence agents installed on the node, as its Pacemaker lists them."""

    model_config = ConfigDict(extra="forbid")

    standards: list[str] = Field(default_factory=list)  # crm_resource --list-standards
    ocf: dict[str, list[str]] = Field(default_factory=dict)  # provider -> agent types
    lsb: list[str] = Field(default_factory=list)
    stonith: list[str] = Field(default_factory=list)
    systemd: list[str] | None = None  # service units (without .service); None: no systemd class there

    def has(self, standard: str, provider: str | None, type_: str) -> bool:
        """Whether `standard[:provider]:type_` is installed (the `crm_resource --show-metadata` question)."""
        if standard == "ocf":
            return type_ in self.ocf.get(provider or "", [])
        if standard == "lsb":
            return type_ in self.lsb
        if standard == "stonith":
            return type_ in self.stonith
        if standard == "systemd":
            return self.systemd is not None and type_.removesuffix(".service") in self.systemd
        return False


class SnapshotVersions(BaseModel):
    pacemaker: str | None = None
    corosync: str | None = None
    crmsh: str | None = None
    ha_gitops: str | None = None


class SnapshotSettings(BaseModel):
    """The node's agent settings a plan depends on."""

    node_name: str
    drift_mode: Literal["correct", "report", "off"] = "correct"
    substitute: list[Substitution] = Field(default_factory=list)


class LastWrite(BaseModel):
    event: str
    config: str


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["ha-gitops-snapshot"] = KIND
    format: Literal[1] = FORMAT
    taken_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    node: str
    cib: str
    crm_mon: str
    quorum: str
    corosync_path: str = "/etc/corosync/corosync.conf"
    corosync_conf: str | None = None
    cmap: dict[str, str] = Field(default_factory=dict)
    agents: SnapshotAgents = Field(default_factory=SnapshotAgents)
    versions: SnapshotVersions = Field(default_factory=SnapshotVersions)
    settings: SnapshotSettings
    last_write: LastWrite | None = None

    # ---- the parsed views (the same parsers the live cluster's answers go through)
    def cib_element(self) -> etree._Element:
        return parse_xml_bytes(self.cib.encode(), source="the snapshot's CIB")

    def status(self) -> ClusterStatus:
        return parse_crm_mon(self.crm_mon)

    def quorum_info(self) -> QuorumInfo:
        return parse_quorumtool(self.quorum)

    def dump(self) -> str:
        return self.model_dump_json(indent=1) + "\n"


def parse_snapshot(data: bytes | str, *, source: str = "snapshot") -> Snapshot:
    """A snapshot from its JSON; an InputError naming the first problem (a wrong format included)."""
    try:
        return Snapshot.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        hint = f" (this ha-gitops reads {KIND} format {FORMAT})" if where in ("kind", "format") else ""
        raise InputError(f"not an ha-gitops snapshot: {where or 'the file'}: {first['msg']}{hint}",
                         file=source, element=where or None) from None


def load_snapshot(path: Path) -> Snapshot:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the snapshot: {exc.strerror}", file=str(path)) from exc
    return parse_snapshot(data, source=str(path))
