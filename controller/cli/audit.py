"""`audit log/show/verify`: the audit trail."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from controller.audit.models import AuditEvent
from controller.cli.common import (
    FORMAT_OPTION,
    handles_errors,
    main,
    out,
    print_json,
)

# ---- audit

AUDIT_DB_OPTION = click.option(
    "--db", "db_url", envvar="HA_GITOPS_AUDIT_URL", default=None, metavar="URL",
    help="Audit database: sqlite:////path/audit.db or postgresql://user:pw@host/db "
         "[env HA_GITOPS_AUDIT_URL; default sqlite:////var/lib/ha-gitops/audit.db]")
_OUTCOME_STYLE = {"success": "green", "failure": "red", "refused": "yellow"}


def _audit_store(db_url: str | None) -> Any:
    from controller.audit.store import AuditStore

    return AuditStore(db_url, create=False)  # reading never creates an empty trail by mistake


# `audit log --format json` leaves out the bulky texts (configurations, patch: see `audit show ID`).
_BULKY = frozenset({"config_before", "config_after", "patch", "corosync_before", "corosync_after"})


def log_entry(event: AuditEvent) -> dict[str, Any]:
    """One event as `audit log --format json` prints it (the event already masked)."""
    entry: dict[str, Any] = event.model_dump(mode="json", exclude=set(_BULKY))
    return entry | {"summary": event.short_summary}


@main.group()
def audit() -> None:
    """The audit trail: every apply, drift, rollback and refusal, hash-chained. Secret values are
    shown as ****."""


@audit.command("log")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help="Only these kinds (repeatable).")
@click.option("--node", default=None, help="Only events from this node.")
@click.option("--commit", default=None, metavar="SHA", help="Only events about this commit (prefix ok).")
@AUDIT_DB_OPTION
@FORMAT_OPTION
@handles_errors
def audit_log(limit: int, kinds: tuple[str, ...], node: str | None, commit: str | None,
              db_url: str | None, fmt: str) -> None:
    """The newest events, newest first."""
    from rich.table import Table
    from rich.text import Text

    with _audit_store(db_url) as store:
        events = [e.masked() for e in store.list(limit=limit, kind=kinds or None, node=node, commit=commit)]
    if fmt == "json":
        print_json([log_entry(e) for e in events])
        return
    if not events:
        out.print("no events")
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("id", "event", "time (UTC)", "node", "kind", "commit", "outcome", "summary"):
        table.add_column(col, no_wrap=col != "summary", overflow="fold")
    for e in events:
        # Text cells: stored strings are never parsed as rich markup. The event id is cluster-wide (the
        # same in every node's trail); its first 8 characters are enough for `audit show`.
        table.add_row(Text(str(e.id)), Text((e.event_id or "-")[:8]),
                      Text(e.time.strftime("%Y-%m-%d %H:%M:%S")), Text(e.node),
                      Text(e.kind), Text(e.commit.short if e.commit else "-"),
                      Text(e.outcome, style=_OUTCOME_STYLE.get(e.outcome, "")), Text(e.short_summary))
    out.print(table)


@audit.command("show")
@click.argument("event_ref", metavar="ID")
@AUDIT_DB_OPTION
@FORMAT_OPTION
@handles_errors
def audit_show(event_ref: str, db_url: str | None, fmt: str) -> None:
    """One event in full (configurations, patch, diff, details), secrets masked. ID: its number in this
    trail, or its cluster-wide event id (8 characters of it are enough)."""
    with _audit_store(db_url) as store:
        e = store.find(event_ref).masked()
    if fmt == "json":
        print_json(e.model_dump(mode="json"))
        return
    fields = [("id", e.id), ("event id", e.event_id), ("time", e.time.isoformat()), ("node", e.node),
              ("kind", e.kind), ("backfilled", "yes, from the CIB marker history" if e.backfilled else None),
              ("outcome", e.outcome), ("summary", e.summary), ("duration", e.duration),
              ("cib version", f"{e.cib_version_before or '-'} -> {e.cib_version_after or '-'}"),
              ("hash", e.hash), ("prev hash", e.prev_hash)]
    if e.commit:
        fields[7:7] = [("commit", e.commit.sha), ("author", e.commit.author),
                       ("signature", e.commit.signature), ("message", e.commit.message)]
    for name, value in fields:
        if value is not None:
            out.print(f"{name + ':':<13} {value}", markup=False)
    diff = e.diff if isinstance(e.diff, str) or e.diff is None else json.dumps(e.diff, indent=2)
    sections = [("error", e.error), ("details", json.dumps(e.details, indent=2) if e.details else None),
                ("diff", diff),
                ("patch", e.patch), ("configuration before", e.config_before),
                ("configuration after", e.config_after), ("corosync.conf before", e.corosync_before),
                ("corosync.conf after", e.corosync_after)]
    for title, body in sections:
        if body:
            out.print(f"\n--- {title}", markup=False)
            out.print(body.rstrip("\n"), markup=False)


@audit.command("verify")
@AUDIT_DB_OPTION
@FORMAT_OPTION
@handles_errors
def audit_verify(db_url: str | None, fmt: str) -> None:
    """Check the hash chain and that the trail misses no write. Exit 0: intact and complete, 2: problems
    (each listed by event id: edited, deleted, ..., and gaps: writes this node missed while it was away
    that it could not backfill) or error."""
    with _audit_store(db_url) as store:
        result = store.verify()
    backfilled = f", {result.backfilled} backfilled from the CIB marker history" if result.backfilled else ""
    if fmt == "json":
        print_json(result.model_dump(mode="json"))
    elif result.ok:
        out.print(f"ok: {result.checked} events{backfilled}, no gap, chain head {result.head_hash}",
                  markup=False)
    else:
        for p in result.problems:
            out.print(f"{p.kind:<14} {p.message}", markup=False)
        out.print(f"{len(result.problems)} problem(s) in {result.checked} events", markup=False)
    sys.exit(0 if result.ok else 2)

# ---- blame


def _trail_event(e: Any) -> Any:
    from controller.blame import TrailEvent

    c = e.commit
    return TrailEvent(seq=e.id, event_id=e.event_id, time=e.time, node=e.node, kind=e.kind,
                      outcome=e.outcome, commit_sha=c.sha if c else None,
                      commit_author=c.author if c else None, commit_message=c.message if c else None,
                      diff=e.diff, config_before=e.config_before, config_after=e.config_after,
                      details=e.details)


@main.command("blame")
@click.argument("wanted", metavar="[OBJECT]", required=False)
@AUDIT_DB_OPTION
@FORMAT_OPTION
@handles_errors
def blame_cmd(wanted: str | None, db_url: str | None, fmt: str) -> None:
    """For each configuration object (or OBJECT: an id, or KIND:ID), the event that last changed it: its
    cluster-wide event id, commit, author and time, from this node's audit trail. Exit 0, 1 OBJECT was
    changed by no event of the trail, 2 error."""
    from rich.table import Table
    from rich.text import Text

    from controller.audit.masking import mask_json
    from controller.blame import blame

    with _audit_store(db_url) as store:
        events = [_trail_event(e) for e in store.list(limit=None, newest_first=False)]
    found = blame(events, wanted)
    # Computed from the real values, shown masked: a changed secret is named, its values are not.
    doc = mask_json(found.model_dump(mode="json"))
    if fmt == "json":
        print_json(doc)
    elif not doc["objects"]:
        out.print(f"no event in this trail changed {wanted}" if wanted else "no change in this trail",
                  markup=False)
    else:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("object", "change", "event", "commit", "author", "time (UTC)", "by"):
            table.add_column(col, no_wrap=col not in ("author", "by"), overflow="fold")
        for o in doc["objects"]:
            by = o["by"] or f"{o['event_kind']} on {o['node']}"
            table.add_row(Text(f"{o['kind']} {o['id']}" + (" *" if o["unsure_after"] else "")),
                          Text(o["action"]), Text((o["event_id"] or str(o["event"]))[:8]),
                          Text((o["commit"] or "-")[:10]), Text(o["author"] or "-"),
                          Text(o["time"][:19].replace("T", " ")), Text(by))
        out.print(table)
        if wanted:
            for o in doc["objects"]:
                for f in o["fields"]:
                    out.print(f"  {o['id']} {f['field']}: {f['old'] if f['old'] is not None else '-'} -> "
                              f"{f['new'] if f['new'] is not None else '-'}", markup=False)
    if doc["unknown"] and fmt != "json":
        nodes = sorted({u["node"] for u in doc["unknown"]})
        out.print(f"* {len(doc['unknown'])} write(s) in this trail have no known changes (backfilled from "
                  "the CIB marker history, no configuration): an object marked * may have changed in them "
                  f"since; blame on {', '.join(nodes)} or against a shared trail knows", markup=False)
    sys.exit(1 if wanted and not doc["objects"] else 0)

# ---- end audit
