"""`ha-gitops snapshot`: one file with everything `plan` reads from this node (for `plan --live FILE`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from controller.cli.common import FORMAT_OPTION, err, handles_errors, main, out, print_json
from controller.cli.operations import CONFIG_OPTION, _settings

SENSITIVE = ("it holds the whole CIB, clear-text resource parameters (passwords) included, like "
             "`cibadmin -Q` output: keep it where only who may read the CIB can (a CI secret or a "
             "restricted artifact)")


@main.command("snapshot")
@CONFIG_OPTION
@click.option("--out", "out_file", required=True, metavar="FILE",
              help="Where to write the snapshot (JSON, mode 0600; `-` for stdout).")
@FORMAT_OPTION
@handles_errors
def snapshot_cmd(config: str | None, out_file: str, fmt: str) -> None:
    """Write one file with everything `plan` reads from this node: the CIB with its status, crm_mon,
    quorum, this node's corosync.conf, the installed agents, the tool versions and the agent settings
    a plan depends on. `ha-gitops plan --live FILE` then plans anywhere, no cluster needed.

    Exit 0 written, 2 error."""
    from controller.cluster.adapter import LiveCluster
    from controller.cluster.snapshot import take_snapshot
    from controller.snapshot import SnapshotSettings

    settings = _settings(config)
    cluster = LiveCluster()
    node = SnapshotSettings(node_name=settings.node_name, drift_mode=settings.drift_mode,
                            substitute=list(settings.substitute))
    snap = take_snapshot(cluster, node)
    snap.last_write = _last_write(settings, snap)
    text = snap.dump()
    if out_file == "-":
        sys.stdout.write(text)
        return
    path = Path(out_file)
    tmp = path.with_name(f".{path.name}.tmp")
    # Created 0600 before anything is written: the CIB may hold passwords.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
    info = {"out": str(path), "node": snap.node, "taken_at": snap.taken_at.isoformat(), "bytes": len(text),
            "versions": snap.versions.model_dump()}
    if fmt == "json":
        print_json(info)
    else:
        out.print(f"snapshot of {snap.node} written to {path} ({len(text)} bytes)", markup=False)
        err.print(f"note: {SENSITIVE}", markup=False)


def _last_write(settings: Any, snap: Any) -> Any:
    """The configuration the marker's event left, from this node's trail (what drift is judged against
    while the head is held); None when the trail does not hold it."""
    from controller.audit.store import AuditStore
    from controller.cib.marker import read_marker
    from controller.errors import HaGitopsError
    from controller.snapshot import LastWrite

    marker = read_marker(snap.cib_element())
    if not marker.event:
        return None
    try:
        with AuditStore(settings.audit_url, create=False) as store:
            saved = store.get_state("last-write", scope=settings.node_name) or {}
    except HaGitopsError:
        return None
    if saved.get("event") != marker.event or not saved.get("config"):
        return None
    return LastWrite(event=saved["event"], config=saved["config"])
