"""The command line: parse arguments, call one function, render its result.

Exit codes: 0 success or no change, 1 changes found (diff/plan), 2 error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from controller.errors import HaGitopsError

# Not a terminal (CI logs, pipes): wide enough that tables are not squeezed to 80 columns.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Human output or JSON for machines.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into a message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HaGitopsError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ha-gitops")
def main() -> None:
    """ha-gitops: a Pacemaker/Corosync cluster's configuration, kept in git."""


# Command groups are added below, one section per verb, each calling into the package.


# ---- corosync


@main.group()
def corosync() -> None:
    """corosync.conf tools."""


@corosync.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@FORMAT_OPTION
@handles_errors
def corosync_diff(old: Path, new: Path, fmt: str) -> None:
    """Key-level changes from OLD to NEW corosync.conf, each classed reload / rolling-restart /
    cluster-restart. Exit 0: no change, 1: changes, 2: error."""
    from controller.corosync import diff_corosync, parse_corosync
    from controller.errors import InputError

    docs = []
    for path in (old, new):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc
        docs.append(parse_corosync(data, source=str(path)))
    changes = diff_corosync(docs[0], docs[1])
    if fmt == "json":
        print_json([c.as_dict() for c in changes])
    elif not changes:
        out.print("no change")
    else:
        for c in changes:
            out.print(f"{c.change_class:<16} {c.path}: {c.old if c.old is not None else '(unset)'} -> "
                      f"{c.new if c.new is not None else '(unset)'}", markup=False)
    sys.exit(1 if changes else 0)

# ---- end corosync


# ---- cib


@main.group()
def cib() -> None:
    """CIB XML tools."""


@cib.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--semantic", is_flag=True,
              help="Adopt live ids for same-meaning elements; ignore cluster-managed fields, "
                   "comments and order where it means nothing (OLD is the live side).")
@click.option("--format", "fmt", type=click.Choice(["xml", "text", "json"]), default="xml",
              show_default=True, help="xml: the v2 patchset for cibadmin --patch; text/json: per object.")
@handles_errors
def cib_diff(old: Path, new: Path, semantic: bool, fmt: str) -> None:
    """Drop-in for `crm_diff -o OLD -n NEW` (whole <cib> or bare <configuration> files).
    Exit 0: no change, 1: changes, 2: error."""
    from controller.cib.diff import diff_files  # lazy: keeps `ha-gitops` startup fast

    result = diff_files(old, new, semantic=semantic)
    if fmt == "xml":
        sys.stdout.write(result.patch_xml())
    elif fmt == "json":
        print_json([c.model_dump() for c in result.objects()])
    else:
        from controller.cib.render import render_text

        sys.stdout.write(render_text(result.objects()) or "no change\n")
    _exit_without_teardown(1 if result.changed else 0)


def _exit_without_teardown(code: int) -> None:
    """sys.exit(code), but as the console script skip the interpreter's teardown: freeing two
    parsed 7 MB CIBs takes ~30 ms, and nothing is left to do once the output is flushed."""
    if getattr(sys.modules.get("__main__"), "main", None) is main:  # not CliRunner or a test
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

# ---- end cib


# ---- validate


@main.command("validate")
@click.argument("directory", required=False, default="desired/kamailio",
                type=click.Path(file_okay=False, path_type=Path))
@FORMAT_OPTION
@handles_errors
def validate(directory: Path, fmt: str) -> None:
    """Validate a desired-state folder (corosync.conf, cib.crm or cib.xml, cluster.toml).
    Exit 0: valid (warnings allowed), 2: invalid."""
    from controller.desired import validate_desired

    report = validate_desired(directory)
    if fmt == "json":
        print_json([f.model_dump() for f in report.findings])
    else:
        for f in report.findings:
            colour = "red" if f.severity == "error" else "yellow"
            out.print(f"[{colour}]{f.severity}[/]: ", end="")
            out.print(f"{f.where()}: {f.message}", markup=False)
        n_err = len(report.errors)
        n_warn = len(report.findings) - n_err
        out.print(f"{directory}: {'valid' if report.valid else 'INVALID'} "
                  f"({n_err} error(s), {n_warn} warning(s))", markup=False)
    sys.exit(0 if report.valid else 2)

# ---- end validate


# ---- audit

AUDIT_DB_OPTION = click.option(
    "--db", "db_url", envvar="HA_GITOPS_AUDIT_URL", default=None, metavar="URL",
    help="Audit database: sqlite:////path/audit.db or postgresql://user:pw@host/db "
         "[env HA_GITOPS_AUDIT_URL; default sqlite:////var/lib/ha-gitops/audit.db]")
_OUTCOME_STYLE = {"success": "green", "failure": "red", "refused": "yellow"}


def _audit_store(db_url: str | None) -> Any:
    from controller.audit.store import AuditStore

    return AuditStore(db_url, create=False)  # reading never creates an empty trail by mistake


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
        # Everything but the bulky texts (configurations, patch: see `audit show ID`).
        bulky = {"config_before", "config_after", "patch", "corosync_before", "corosync_after"}
        print_json([e.model_dump(mode="json", exclude=bulky) | {"summary": e.short_summary} for e in events])
        return
    if not events:
        out.print("no events")
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("id", "time (UTC)", "node", "kind", "commit", "outcome", "summary"):
        table.add_column(col, no_wrap=col != "summary", overflow="fold")
    for e in events:
        # Text cells: stored strings are never parsed as rich markup.
        table.add_row(Text(str(e.id)), Text(e.time.strftime("%Y-%m-%d %H:%M:%S")), Text(e.node),
                      Text(e.kind), Text(e.commit.short if e.commit else "-"),
                      Text(e.outcome, style=_OUTCOME_STYLE.get(e.outcome, "")), Text(e.short_summary))
    out.print(table)


@audit.command("show")
@click.argument("event_id", type=int)
@AUDIT_DB_OPTION
@FORMAT_OPTION
@handles_errors
def audit_show(event_id: int, db_url: str | None, fmt: str) -> None:
    """One event in full (configurations, patch, diff, details), secrets masked."""
    with _audit_store(db_url) as store:
        e = store.get(event_id).masked()
    if fmt == "json":
        print_json(e.model_dump(mode="json"))
        return
    fields = [("id", e.id), ("time", e.time.isoformat()), ("node", e.node), ("kind", e.kind),
              ("outcome", e.outcome), ("summary", e.summary), ("duration", e.duration),
              ("cib version", f"{e.cib_version_before or '-'} -> {e.cib_version_after or '-'}"),
              ("hash", e.hash), ("prev hash", e.prev_hash)]
    if e.commit:
        fields[5:5] = [("commit", e.commit.sha), ("author", e.commit.author),
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
    """Check the hash chain. Exit 0: intact, 2: problems (each listed by event id) or error."""
    with _audit_store(db_url) as store:
        result = store.verify()
    if fmt == "json":
        print_json(result.model_dump(mode="json"))
    elif result.ok:
        out.print(f"ok: {result.checked} events, chain head {result.head_hash}", markup=False)
    else:
        for p in result.problems:
            out.print(f"{p.kind:<14} {p.message}", markup=False)
        out.print(f"{len(result.problems)} problem(s) in {result.checked} events", markup=False)
    sys.exit(0 if result.ok else 2)

# ---- end audit


# ---- sandbox
SANDBOX_DIR_OPTION = click.option(
    "--state-dir", envvar="HA_GITOPS_SANDBOX_DIR", default=None, metavar="DIR",
    help="Where the sandbox keeps its state [env HA_GITOPS_SANDBOX_DIR; default /var/lib/ha-gitops-sandbox].")


def _sandbox(state_dir: str | None) -> Any:
    from controller.sandbox.manager import Sandbox

    return Sandbox(state_dir)


@main.group()
def sandbox() -> None:
    """A real 3-node Pacemaker/Corosync cluster on this machine, in Linux namespaces (needs root)."""


@sandbox.command("up")
@click.option("--cluster", "cluster_dir", default="desired/kamailio", show_default=True,
              type=click.Path(file_okay=False, exists=True), help="Desired cluster folder to model.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for quorum and a DC.")
@click.option("--agents", is_flag=True, help="Start an ha-gitops agent inside every node.")
@click.option("--repo", default=None, metavar="URL", help="With --agents: the git repository to follow.")
@click.option("--branch", default="main", show_default=True, help="With --agents: the branch to follow.")
@click.option("--path", "repo_path", default=".", show_default=True,
              help="With --agents: the cluster folder inside the repository.")
@SANDBOX_DIR_OPTION
@FORMAT_OPTION
@handles_errors
def sandbox_up(cluster_dir: str, timeout: float, agents: bool, repo: str | None, branch: str, repo_path: str,
               state_dir: str | None, fmt: str) -> None:
    """Start one node per corosync nodelist entry; return once quorate with a DC."""
    from controller.sandbox.topology import SandboxAgents

    spec = None
    if agents:
        if not repo:
            raise click.UsageError("--agents needs --repo URL")
        local = Path(repo.removeprefix("file://"))
        url = f"file://{local.resolve()}" if repo.startswith("file://") or local.exists() else repo
        spec = SandboxAgents(repo_url=url, branch=branch, path=repo_path)
    result = _sandbox(state_dir).up(cluster_dir, timeout=timeout, agents=spec)
    if fmt == "json":
        print_json(result.model_dump())
        return
    out.print(f"sandbox up: {', '.join(result.nodes)} quorate, DC {result.dc}, "
              f"in {result.seconds:.1f}s (state in {result.state_dir})", markup=False)


@sandbox.command("demo")
@click.option("--cluster", "cluster_dir", default="desired/kamailio", show_default=True,
              type=click.Path(file_okay=False, exists=True))
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_demo(cluster_dir: str, state_dir: str | None) -> None:
    """The whole loop, narrated: agents, initial sync, a commit, drift undone, rollback, audit log."""
    from controller.sandbox.demo import run_demo

    run_demo(cluster_dir, lambda text: out.print(text, markup=False), state_dir)


@sandbox.command("down")
@click.option("--keep-logs", is_flag=True, help="Keep the node logs in the state directory.")
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_down(keep_logs: bool, state_dir: str | None) -> None:
    """Stop every node; leave no process, mount, namespace or veth behind."""
    seconds = _sandbox(state_dir).down(keep_logs=keep_logs)
    out.print(f"sandbox down in {seconds:.2f}s" + (" (logs kept)" if keep_logs else ""), markup=False)


@sandbox.command("status")
@SANDBOX_DIR_OPTION
@FORMAT_OPTION
@handles_errors
def sandbox_status(state_dir: str | None, fmt: str) -> None:
    """Nodes (power, network, services, cluster view), quorum, DC and resources."""
    st = _sandbox(state_dir).status()
    if fmt == "json":
        print_json(st.model_dump())
        return
    if not st.running:
        out.print(f"no sandbox running (state dir {st.state_dir})", markup=False)
        return
    from rich.table import Table

    def yn(v: bool | None) -> str:
        return "-" if v is None else ("yes" if v else "no")

    t = Table(title=f"sandbox {st.cluster_dir}: quorate={yn(st.quorate)} DC={st.dc or '-'}")
    for col in ("node", "address", "nodeid", "power", "network", "corosync", "pacemaker", "agent", "online",
                "standby", "DC"):
        t.add_column(col)
    for n in st.nodes:
        t.add_row(n.name, n.address, str(n.nodeid), "on" if n.powered else "off", "cut" if n.cut else "ok",
                  yn(n.corosync), yn(n.pacemaker), yn(n.agent), yn(n.cluster_online), yn(n.standby),
                  yn(n.is_dc))
    out.print(t)
    if st.resources:
        rt = Table(title="resources")
        for col in ("resource", "agent", "role", "nodes"):
            rt.add_column(col)
        for r in st.resources:
            rt.add_row(r["id"], r["agent"], r["role"], ", ".join(r["nodes"]))
        out.print(rt)


@sandbox.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=300.0, show_default=True)
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_exec(node: str, argv: tuple[str, ...], timeout: float, state_dir: str | None) -> None:
    """Run a command inside NODE: `ha-gitops sandbox exec kamailio01 -- crm_mon -1`."""
    import subprocess

    sb = _sandbox(state_dir)
    sb.spec().node(node)
    # Interactive pass-through: the user's terminal is the command's terminal.
    rc = subprocess.call([*sb.prefix(node), *argv], timeout=timeout)
    sys.exit(rc)


def _node_action(name: str, doc: str, action: Callable[[Any, str], Any]) -> None:
    @sandbox.command(name, help=doc)
    @click.argument("node")
    @SANDBOX_DIR_OPTION
    @handles_errors
    def _cmd(node: str, state_dir: str | None) -> None:
        action(_sandbox(state_dir), node)
        out.print(f"{name} {node}: done", markup=False)


_node_action("poweroff", "Pull the power: kill every process of NODE at once.", lambda sb, n: sb.poweroff(n))
_node_action("start", "Power NODE on (or start its cluster services if they are down).",
             lambda sb, n: sb.start(n))
_node_action("cut", "Unplug NODE from the network (its link stays up; packets go nowhere).",
             lambda sb, n: sb.cut(n))
_node_action("heal", "Plug NODE back into the network.", lambda sb, n: sb.heal(n))


@sandbox.command("kill")
@click.argument("node")
@click.argument("service", type=click.Choice(["corosync", "pacemaker", "agent"]))
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_kill(node: str, service: str, state_dir: str | None) -> None:
    """SIGKILL corosync, all pacemaker daemons, or the agent on NODE (the node stays powered)."""
    r = _sandbox(state_dir).kill(node, service)
    out.print(f"killed {service} on {node} (pids {', '.join(map(str, r.get('killed', [])))})", markup=False)

# ---- end sandbox


# ---- operations: plan, apply, agent, status, rollback, suspend, resume
CONFIG_OPTION = click.option("--config", "config", envvar="HA_GITOPS_CONFIG", default=None, metavar="FILE",
                             help="Agent configuration [env HA_GITOPS_CONFIG; "
                                  "default /etc/ha-gitops/agent.toml].")
DIR_OPTION = click.option("--dir", "folder", default=None, type=click.Path(file_okay=False, exists=True),
                          help="Use this desired-state folder instead of the configured git repository.")


def _settings(config: str | None, folder: str | None = None) -> Any:
    from controller.settings import load_settings

    return load_settings(config, overrides={"repo_url": str(Path(folder).resolve())} if folder else None)


def _desired_input(settings: Any, folder: str | None, work: Path) -> Any:
    """The desired state to act on: a folder given on the command line, or the branch tip from git."""
    from controller.reconcile import DesiredInput
    from controller.source.git import GitSource
    from controller.source.models import SourceConfig

    if folder:
        return DesiredInput(folder=Path(folder))
    source = GitSource(SourceConfig.from_settings(settings))
    try:
        sync = source.sync(force=True)
        if sync.revision is None:
            from controller.errors import HaGitopsError

            raise HaGitopsError(f"no revision of {settings.branch} from {settings.repo_url}: {sync.error}")
        rev = sync.revision
        return DesiredInput(folder=source.export(rev.sha, work / rev.sha), sha=rev.sha, author=rev.author,
                            message=rev.message, signature=str(rev.signature),
                            refusal=sync.refusal if sync.refused else None)
    finally:
        source.close()


@main.command("plan")
@CONFIG_OPTION
@DIR_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text, markdown (for a pull-request comment) or json.")
@handles_errors
def plan_cmd(config: str | None, folder: str | None, fmt: str) -> None:
    """What would change on the live cluster (exit 0 no change, 1 changes, 2 error), like `flux diff`."""
    import tempfile

    from controller.cluster.adapter import LiveCluster
    from controller.desired.state import load_desired
    from controller.plan import make_plan, render_plan_markdown, render_plan_text

    settings = _settings(config, folder)
    with tempfile.TemporaryDirectory(prefix="ha-gitops-plan-") as work:
        desired = _desired_input(settings, folder, Path(work))
        state = load_desired(desired.folder)
        cluster = LiveCluster()
        live = cluster.read_cib()
        plan = make_plan(state, live, cluster.read_file("/etc/corosync/corosync.conf"),
                         revision=desired.sha, substitutions=settings.substitute)
        if plan.cib_changes:
            from controller.impact import SimulationError, simulate
            from controller.plan import proposed_configuration

            try:
                plan.impact = simulate(live, proposed_configuration(state, live, settings.substitute),
                                       runner=cluster.runner)
            except SimulationError as exc:
                plan.notes.append(f"impact prediction unavailable: {exc}")
    if fmt == "json":
        print_json(plan.model_dump(mode="json", by_alias=True) | {"changed": plan.changed})
    elif fmt == "markdown":
        sys.stdout.write(render_plan_markdown(plan))
    else:
        sys.stdout.write(render_plan_text(plan))
    sys.exit(1 if plan.changed else 0)


def _reconciler(settings: Any) -> Any:
    from controller.audit.store import AuditStore
    from controller.cluster.adapter import LiveCluster
    from controller.reconcile import Reconciler

    return Reconciler(node=settings.node_name, cluster=LiveCluster(), store=AuditStore(settings.audit_url),
                      drift_mode=settings.drift_mode, substitutions=settings.substitute,
                      shared_audit=settings.audit_url.startswith("postgres"))


def _print_result(result: Any, fmt: str) -> None:
    if fmt == "json":
        print_json(result.model_dump(mode="json"))
    else:
        out.print(f"{result.outcome}: {result.message or '-'}"
                  + (f" (revision {result.revision[:12]})" if result.revision else "")
                  + (f"; audit events {', '.join(map(str, result.events))}" if result.events else ""),
                  markup=False)


@main.command("apply")
@click.option("--once", is_flag=True, required=True, help="One reconcile pass, then exit (the agent loops).")
@CONFIG_OPTION
@DIR_OPTION
@FORMAT_OPTION
@handles_errors
def apply_cmd(once: bool, config: str | None, folder: str | None, fmt: str) -> None:
    """Apply the desired state now: one version-checked, verified, recorded pass (from any node)."""
    import tempfile

    settings = _settings(config, folder)
    rec = _reconciler(settings)
    with tempfile.TemporaryDirectory(prefix="ha-gitops-apply-") as work:
        desired = _desired_input(settings, folder, Path(work))
        # An operator's explicit apply writes from whichever node it runs on; agents leave it to the DC.
        result = rec.run_pass(desired, trigger="cli", force_leader=True)
    _print_result(result, fmt)
    sys.exit(2 if result.outcome in ("error", "refused", "no-quorum") else 0)


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
        agent = store.get_state("agent-status", scope=settings.node_name)
        last = store.last()
    data = {"node": settings.node_name, "dc": st.dc, "quorate": st.quorate,
            "nodes": {n.name: ("standby" if n.standby else "online") if n.online else "offline"
                      for n in st.nodes},
            "applied": marker.model_dump(), "agent": agent,
            "last_event": {"id": last.id, "kind": last.kind, "summary": last.short_summary,
                           "time": last.time.isoformat()} if last else None}
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
    if last:
        out.print(f"last event: #{last.id} {last.kind} {last.short_summary}", markup=False)


@main.command("rollback")
@click.argument("event_id", type=int)
@CONFIG_OPTION
@FORMAT_OPTION
@handles_errors
def rollback_cmd(event_id: int, config: str | None, fmt: str) -> None:
    """Restore the configuration from before audit event ID; pin its revision until a newer commit."""
    result = _reconciler(_settings(config)).rollback(event_id)
    _print_result(result, fmt)


def _switch(config: str | None, kind: str, update: dict[str, Any], summary: str) -> None:
    from controller.audit.models import NewEvent
    from controller.audit.store import AuditStore
    from controller.cluster.adapter import LiveCluster
    from controller.cluster.cib_writer import write_marker_only

    settings = _settings(config)
    marker = write_marker_only(LiveCluster(), lambda m: m.model_copy(update=update))
    with AuditStore(settings.audit_url) as store:
        ev = store.append(NewEvent(node=settings.node_name, kind=kind, outcome="success", summary=summary,
                                   details={"marker": marker.model_dump()}))
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

# ---- end operations


if __name__ == "__main__":
    main()
