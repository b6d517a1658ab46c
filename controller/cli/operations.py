"""Operating a cluster: plan, apply, agent, status, rollback, suspend, resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from controller.cli.common import (
    FORMAT_OPTION,
    handles_errors,
    main,
    out,
    print_json,
)

CONFIG_OPTION = click.option("--config", "config", envvar="HA_GITOPS_CONFIG", default=None, metavar="FILE",
                             help="Agent configuration [env HA_GITOPS_CONFIG; "
                                  "default /etc/ha-gitops/agent.toml].")
DIR_OPTION = click.option("--dir", "folder", default=None, type=click.Path(file_okay=False, exists=True),
                          help="Use this desired-state folder instead of the configured git repository.")


def _settings(config: str | None) -> Any:
    from controller.settings import load_settings

    return load_settings(config)


def _desired_input(settings: Any, folder: str | None, work: Path) -> Any:
    """The desired state to act on: a folder given on the command line, or the branch tip from git."""
    from controller.errors import HaGitopsError
    from controller.reconcile import DesiredInput
    from controller.source.git import GitSource
    from controller.source.models import SourceConfig

    if folder:
        return DesiredInput(folder=Path(folder).resolve())
    settings.require_repo("plan/apply")
    source = GitSource(SourceConfig.from_settings(settings))
    try:
        sync = source.sync(force=True)
        if sync.revision is None:
            raise HaGitopsError(f"no revision of {settings.branch} from {settings.repo_url}: {sync.error}")
        rev = sync.revision
        return DesiredInput(folder=source.export(rev.sha, work / rev.sha), sha=rev.sha, author=rev.author,
                            message=rev.message, signature=str(rev.signature),
                            refusal=sync.refusal if sync.refused else None)
    finally:
        source.close()


def _render_decision(decision: Any, fmt: str) -> None:
    from controller.decision_render import decision_markdown, decision_text

    if fmt == "json":
        print_json(decision.model_dump(mode="json") | {"exit_code": decision.exit_code,
                                                       "changed": decision.plan.changed})
    elif fmt == "markdown":
        sys.stdout.write(decision_markdown(decision))
    else:
        sys.stdout.write(decision_text(decision))


@main.command("plan")
@CONFIG_OPTION
@DIR_OPTION
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also save the plan (decision, basis and desired files) for `apply --plan FILE`.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text, markdown (for a pull-request comment) or json.")
@click.option("--live", "live_file", default=None,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Plan against this snapshot (`ha-gitops snapshot --out FILE` on a node) instead of the "
                   "cluster: anywhere, no cluster needed; the node's settings come with it.")
@click.option("--base", "base_rev", default=None, metavar="REV",
              help="Compare --dir (a folder in a git work tree; without --dir the configured repository's "
                   "branch tip) with the same folder at git revision REV instead of the cluster: what a "
                   "pull request changes; no cluster needed.")
@handles_errors
def plan_cmd(config: str | None, folder: str | None, out_file: Path | None, fmt: str,
             live_file: Path | None, base_rev: str | None) -> None:
    """What the agent would do with the desired state, decided exactly as the agent decides it.

    Exit 0 no change, 1 changes the agent would apply, 2 error, 3 changes the agent would refuse
    (invalid, policy, signature, pinned, bad revision, suspended), like `flux diff` (0/1) plus 3."""
    import tempfile

    from controller.saved_plan import PlanSource, SavedPlan, folder_files
    from controller.wiring import build_reconciler

    settings = _settings(config)
    if base_rev is not None:
        if live_file is not None or out_file is not None:
            raise click.UsageError("--base REV compares the desired folder with itself at REV: it takes "
                                   "neither --live nor --out (there is no cluster state to apply it to)")
        decision = _plan_against_base(settings, Path(folder) if folder else None, base_rev)
        _render_decision(decision, fmt)
        sys.exit(decision.exit_code)
    # What the DC's agent would decide: the same function, the same inputs, nothing written.
    with tempfile.TemporaryDirectory(prefix="ha-gitops-plan-") as work:
        if live_file is not None:
            settings, rec = _snapshot_reconciler(config, live_file, Path(work))
        else:
            rec = build_reconciler(settings, rollout=True, store=_read_only_store(settings, Path(work)))
        desired = _desired_input(settings, folder, Path(work))
        result = rec.run_pass(desired, trigger="plan", role="writer", dry_run=True)
        decision = result.decision
        assert decision is not None
        if live_file is not None:  # a pull-request comment says what it was planned against
            snap = rec.cluster.snapshot
            decision.plan.notes.append(f"planned off the cluster, against the snapshot of {snap.node} taken "
                                       f"{snap.taken_at:%Y-%m-%d %H:%M:%S} UTC")
        if out_file is not None:
            source = PlanSource(sha=desired.sha, author=desired.author, message=desired.message,
                                signature=desired.signature, refusal=desired.refusal,
                                folder=str(folder) if folder else None)
            saved = SavedPlan(node=settings.node_name, decision=decision, source=source,
                              files=folder_files(desired.folder))
            out_file.write_text(saved.model_dump_json(indent=2) + "\n")
    _render_decision(decision, fmt)
    sys.exit(decision.exit_code)


def _plan_against_base(settings: Any, folder: Path | None, base_rev: str) -> Any:
    """--dir DIR (in a git work tree) against DIR at REV; without --dir, the configured repository's branch
    tip against its folder at REV."""
    import tempfile
    from datetime import UTC, datetime

    from controller.base_plan import plan_against_base
    from controller.cluster.agents import local_agents
    from controller.cluster.corosync_test import local_corosync_check
    from controller.desired.validate import validate_state
    from controller.source.worktree import folder_at

    agents, coro = local_agents(), local_corosync_check()

    def validate(state: Any) -> Any:
        return validate_state(state, agents=agents, substitutions=settings.substitute, corosync_check=coro)

    with tempfile.TemporaryDirectory(prefix="ha-gitops-plan-base-") as work:
        revision = None
        if folder is not None:
            sha = folder_at(folder, base_rev, Path(work) / "base")
            head = folder.resolve()
        else:
            head, revision, sha = _repo_folders(settings, base_rev, Path(work))
        return plan_against_base(head, Path(work) / "base", revision=revision,
                                 base_label=f"{base_rev} ({sha[:12]})", validator=validate,
                                 substitutions=settings.substitute, now=datetime.now(UTC))


def _repo_folders(settings: Any, base_rev: str, work: Path) -> tuple[Path, str, str]:
    """The configured branch's tip and the folder at `base_rev`, exported from the agent's kind of clone
    (work/head, work/base): (head folder, head sha, base sha)."""
    from controller.errors import HaGitopsError
    from controller.source.git import GitSource
    from controller.source.models import SourceConfig

    settings.require_repo("plan --base")
    source = GitSource(SourceConfig.from_settings(settings.model_copy(update={"cache_dir": work / "cache"})))
    try:
        sync = source.sync(force=True)
        if sync.revision is None:
            raise HaGitopsError(f"no revision of {settings.branch} from {settings.repo_url}: {sync.error}")
        base = source.resolve(base_rev)
        if base is None:
            raise HaGitopsError(f"--base {base_rev}: no such revision in {settings.repo_url} (fetched: the "
                                f"branch {settings.branch} and its history)")
        head = source.export(sync.revision.sha, work / "head")
        source.export(base, work / "base")
        return head, sync.revision.sha, base
    finally:
        source.close()


def _snapshot_reconciler(config: str | None, live_file: Path, work: Path) -> tuple[Any, Any]:
    """The plan's reconciler over a snapshot: the node's settings (node name, drift mode, substitutions)
    and the configuration its last write left, a cluster that can only be read, nothing of this machine's
    cluster (if it has one) consulted."""
    from datetime import UTC, datetime

    from controller.audit.store import AuditStore
    from controller.cli.common import err
    from controller.cluster.adapter import LiveCluster
    from controller.cluster.snapshot import SnapshotCluster
    from controller.settings import load_settings
    from controller.snapshot import load_snapshot
    from controller.wiring import build_reconciler

    snap = load_snapshot(live_file)
    node = snap.settings
    settings = load_settings(config, overrides={
        "node_name": node.node_name, "drift_mode": node.drift_mode,
        "substitute": [s.model_dump() for s in node.substitute]})
    store = AuditStore(f"sqlite:///{work / 'snapshot-trail.db'}")
    if snap.last_write is not None:
        store.set_state("last-write", snap.last_write.model_dump(), scope=node.node_name)
    age = (datetime.now(UTC) - snap.taken_at).total_seconds()
    err.print(f"planning against the snapshot of {snap.node} taken {snap.taken_at:%Y-%m-%d %H:%M:%S} UTC "
              f"({age / 60:.0f} min ago), not the live cluster", markup=False)
    here = LiveCluster().tool_versions()  # the local tools' --version: no cluster is asked
    for tool, theirs in snap.versions.model_dump(exclude={"ha_gitops"}).items():
        if theirs and here.get(tool) != theirs:
            err.print(f"warning: the snapshot was taken with {tool} {theirs}, this machine has "
                      f"{here.get(tool) or 'none'}: the plan may differ from the node's", markup=False)
    return settings, build_reconciler(settings, cluster=SnapshotCluster(snap, source=str(live_file)),
                                      store=store, rollout=True)


def _read_only_store(settings: Any, work: Path) -> Any:
    """`plan` records nothing; it reads this node's trail (what the last write left) when there is one,
    else an empty scratch trail in `work` (the store needs a file: its schema is made by a child)."""
    from controller.audit.store import AuditStore
    from controller.errors import HaGitopsError

    try:
        return AuditStore(settings.audit_url, create=False)
    except HaGitopsError:
        return AuditStore(f"sqlite:///{work / 'no-trail.db'}")


def _print_result(result: Any, fmt: str) -> None:
    if fmt == "json":
        print_json(result.model_dump(mode="json", exclude={"decision"})
                   | {"decision": result.decision.model_dump(mode="json") if result.decision else None})
        return
    out.print(f"{result.outcome}: {result.message or '-'}"
              + (f" (revision {result.revision[:12]})" if result.revision else "")
              + (f"; audit events {', '.join(map(str, result.events))}" if result.events else ""),
              markup=False)
    if result.failure is not None:
        out.print(f"failed at {result.failure.stage}: {result.failure.reason}", markup=False)
    if result.decision is not None and result.decision.reasons and result.outcome != "no-change":
        for r in result.decision.reasons:
            out.print("  " + r.text().replace("\n", "\n  "), markup=False)


# What `apply` exits with: 0 carried out (or nothing to do), 2 error, 3 refused (nothing applied).
APPLY_EXIT = {"no-change": 0, "applied": 0, "drift-corrected": 0, "drift-reported": 0, "drift-ignored": 0,
              "refused": 3, "suspended": 3, "pinned": 3, "bad-revision": 3, "rolled-back": 2, "error": 2,
              "no-quorum": 2, "waiting-for-dc": 2, "no-source": 2,
              "waiting-for-adopt": 3, "waiting-for-secrets": 2}


@main.command("apply")
@click.option("--once", is_flag=True, help="One reconcile pass now, then exit (the agent loops).")
@click.option("--plan", "plan_file", default=None,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Apply exactly this saved plan (`plan --out`); refused if anything moved since.")
@CONFIG_OPTION
@DIR_OPTION
@FORMAT_OPTION
@handles_errors
def apply_cmd(once: bool, plan_file: Path | None, config: str | None, folder: str | None, fmt: str) -> None:
    """Apply the desired state now, from this node: one version-checked, verified, recorded pass.

    The CIB part is written here; a corosync.conf change needs the agents (node by node), so a revision
    with one is refused up front. Exit 0 applied or nothing to do, 2 error or rolled back, 3 refused."""
    import tempfile

    from controller.reconcile import DesiredInput
    from controller.saved_plan import load_saved_plan, write_files
    from controller.wiring import build_reconciler

    if not once and plan_file is None:
        raise click.UsageError("say --once (one pass now) or --plan FILE (a saved plan)")
    if plan_file is not None and folder:
        raise click.UsageError("--plan carries its own desired files: no --dir with it")
    settings = _settings(config)
    rec = build_reconciler(settings)
    with tempfile.TemporaryDirectory(prefix="ha-gitops-apply-") as work:
        expect = None
        if plan_file is not None:
            saved = load_saved_plan(plan_file)
            expect = saved.decision
            src = saved.source
            desired = DesiredInput(folder=write_files(saved.files, Path(work) / "plan"), sha=src.sha,
                                   author=src.author, message=src.message, signature=src.signature,
                                   refusal=src.refusal)
            if src.sha and settings.repo_url:
                tip = _desired_input(settings, None, Path(work))
                if tip.sha != src.sha:
                    desired = tip  # the branch moved: the decision on its tip differs, and says so
        else:
            desired = _desired_input(settings, folder, Path(work))
        # An operator's explicit apply writes from whichever node it runs on; agents leave it to the DC.
        result = rec.run_pass(desired, trigger="cli", role="operator", expect=expect)
    _print_result(result, fmt)
    sys.exit(APPLY_EXIT[result.outcome])


@main.command("agent")
@CONFIG_OPTION
@handles_errors
def agent_cmd(config: str | None) -> None:
    """The long-running service: follow the branch, apply, correct drift, record (systemd Type=notify)."""
    import logging

    from controller.agent import Agent

    settings = _settings(config)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # APScheduler logs every job run at INFO: one line per poll is noise in the journal.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    Agent(settings).run()


@main.command("status")
@CONFIG_OPTION
@FORMAT_OPTION
@handles_errors
def status_cmd(config: str | None, fmt: str) -> None:
    """The cluster as ha-gitops sees it: applied revision, suspended/pinned, this node's agent, health."""
    from controller.audit.store import AuditStore
    from controller.cib.marker import read_marker
    from controller.cluster.adapter import LiveCluster

    settings = _settings(config)
    cluster = LiveCluster()
    st = cluster.status()
    marker = read_marker(cluster.read_cib())
    with AuditStore(settings.audit_url) as store:
        agent = read_agent_status(settings.status_file) or store.get_state("agent-status",
                                                                          scope=settings.node_name)
        last = store.last()
        outbox = store.outbox_summary([t.key for t in settings.notify]) if settings.notify else None
    data = {"node": settings.node_name, "dc": st.dc, "quorate": st.quorate,
            "nodes": {n.name: ("standby" if n.standby else "online") if n.online else "offline"
                      for n in st.nodes},
            "applied": marker.model_dump(), "agent": agent,
            "last_event": {"id": last.id, "event_id": last.event_id, "kind": last.kind,
                           "summary": last.short_summary,
                           "time": last.time.isoformat()} if last else None}
    if outbox is not None:
        data["notifications"] = {**outbox, "targets": [t.label for t in settings.notify]}
    if fmt == "json":
        print_json(data)
        return
    state = "suspended" if marker.suspended else (
        "pinned at " + marker.pinned[:12] if marker.pinned else "following")
    out.print(f"cluster: DC {st.dc or '-'}, {'quorate' if st.quorate else 'NOT quorate'}; "
              + ", ".join(f"{k} {v}" for k, v in data["nodes"].items()), markup=False)
    out.print(f"applied: {(marker.revision or '-')[:12]} ({marker.kind or '-'} by {marker.applied_by or '-'} "
              f"at {marker.applied_at or '-'}); agents {state}", markup=False)
    if agent:
        out.print(f"agent on {settings.node_name}: {agent.get('outcome')} {agent.get('message') or ''} "
                  f"(at {agent.get('time')}; source {str(agent.get('source_revision') or '-')[:12]}"
                  + (f", error: {agent['source_error']}" if agent.get("source_error") else "") + ")",
                  markup=False)
    else:
        out.print(f"agent on {settings.node_name}: no pass recorded", markup=False)
    if (agent or {}).get("verify_pending"):
        out.print(f"verify: {agent['verify_pending']}", markup=False)
    failure = (agent or {}).get("last_failure")
    if failure:
        event = f" (event #{failure['event']})" if failure.get("event") else ""
        out.print(f"last failure: {failure.get('stage')} {failure.get('reason')} at {failure.get('time')}: "
                  f"{failure.get('message')}{event}", markup=False)
    if last:
        out.print(f"last event: #{last.id} ({(last.event_id or '-')[:8]}) {last.kind} {last.short_summary}",
                  markup=False)
    if outbox is not None:
        out.print(_outbox_line(outbox, [t.label for t in settings.notify]), markup=False)


def _outbox_line(outbox: dict[str, Any], targets: list[str]) -> str:
    line = (f"notifications: {outbox['pending']} pending, {outbox['failing']} failing, {outbox['sent']} sent "
            f"(to {', '.join(targets)})")
    if outbox.get("unconfigured"):
        line += f"; {outbox['unconfigured']} queued for targets not configured here"
    oldest = outbox.get("oldest_failure")
    if oldest:
        line += (f"; oldest failure: event {oldest['event_id'][:8]} to {oldest['target']}, "
                 f"{oldest['attempts']} attempt(s) since {oldest['created']}: {oldest['last_error']}")
    return line


def read_agent_status(path: Path) -> dict[str, Any] | None:
    """The agent's last pass as it wrote it beside the trail (None: no agent ran since boot)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


@main.command("rollback")
@click.argument("event_id", metavar="ID")
@CONFIG_OPTION
@FORMAT_OPTION
@handles_errors
def rollback_cmd(event_id: str, config: str | None, fmt: str) -> None:
    """Restore the configuration from before audit event ID; pin its revision until a newer commit.

    ID: the event's cluster-wide event id (8+ characters of it; the same on every node, `audit log`
    shows it) or its number in this node's trail."""
    from controller.wiring import build_reconciler

    result = build_reconciler(_settings(config)).rollback(event_id)
    _print_result(result, fmt)
    sys.exit(0 if result.outcome == "rolled-back" else 2)


def _switch(config: str | None, kind: str, update: dict[str, Any], summary: str) -> None:
    import time
    import uuid

    from controller.audit.models import NewEvent
    from controller.audit.store import AuditStore
    from controller.cib.marker import HistoryEntry, Marker, previous_event, push_history
    from controller.cluster.adapter import LiveCluster
    from controller.cluster.cib_writer import LostLeadership, write_marker_only
    from controller.errors import HaGitopsError
    from controller.failures import Failure
    from controller.notifications import route

    settings = _settings(config)
    # The switch is an entry of the marker history of its own: the other nodes' trails record it too.
    marker_event = str(uuid.uuid4())

    def switched(m: Marker) -> Marker:
        return push_history(m.model_copy(update=update), HistoryEntry(
            event=marker_event, kind=kind, revision=m.revision, node=settings.node_name, at=int(time.time())))

    with AuditStore(settings.audit_url) as store:
        try:
            marker = write_marker_only(LiveCluster(), switched)
        except LostLeadership as exc:
            # Refused (no quorum here): recorded, so the trail says the operator tried and nothing changed.
            failure = Failure.of("write", str(exc), reason=exc.reason)
            ev = store.append(NewEvent(
                node=settings.node_name, kind=kind, outcome="refused", error=str(exc),
                summary=f"{kind} refused: this node's partition has no quorum; nothing written",
                details={**exc.details(), **failure.details()}),
                notify=route(kind, "refused", settings.notify))
            raise HaGitopsError(f"{exc} (recorded as audit event {ev.id})") from exc
        ev = store.append(NewEvent(
            event_id=marker_event, node=settings.node_name, kind=kind, outcome="success", summary=summary,
            details={"marker": marker.model_dump(exclude={"history", "history_before"}),
                     "marker_event": marker_event, "marker_prev": previous_event(marker, marker_event)}),
            notify=route(kind, "success", settings.notify))
    out.print(f"{summary} (audit event {ev.id})", markup=False)


@main.command("suspend")
@CONFIG_OPTION
@handles_errors
def suspend_cmd(config: str | None) -> None:
    """Stop every agent of the cluster from writing (they keep observing and reporting)."""
    _switch(config, "suspend", {"suspended": True}, "agents suspended cluster-wide")


@main.command("resume")
@CONFIG_OPTION
@handles_errors
def resume_cmd(config: str | None) -> None:
    """Undo `suspend` and any rollback pin: agents apply the branch tip again."""
    _switch(config, "resume", {"suspended": False, "pinned": None}, "agents resumed; pin cleared")

