"""Taking over a running cluster: `export` (its configuration as a desired folder) and `adopt` (the first
write to a cluster ha-gitops never managed, confirmed by an operator)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

import click

from controller.cli.common import FORMAT_OPTION, err, handles_errors, main, out, print_json
from controller.cli.operations import APPLY_EXIT, CONFIG_OPTION, DIR_OPTION, _desired_input, _settings
from controller.notifications import route

COROSYNC_CONF = "/etc/corosync/corosync.conf"
SECRETS_HINT = ("keep them out of git: `export --move-secrets` moves them into secrets.age, encrypted to "
                "cluster.toml's [secrets] recipients (or --recipient), and the CIB then holds lrm://")


@main.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write (created; corosync.conf and cib.* there are replaced, "
                   "a cluster.toml is kept).")
@click.option("--format", "cib_format", type=click.Choice(["crm", "xml"]), default="crm", show_default=True,
              help="cib.crm (crmsh's own `configure show`) or cib.xml (the <configuration> element).")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What export prints: text or json.")
@click.option("--move-secrets", is_flag=True,
              help="Move clear-text secret-looking resource parameters into secrets.age (`@secret:NAME` in "
                   "the configuration), encrypted to cluster.toml's [secrets] recipients and --recipient.")
@click.option("--recipient", "recipients", multiple=True, metavar="AGE_RECIPIENT",
              help="With --move-secrets: an age recipient (repeatable; every node's and the operators').")
@handles_errors
def export_cmd(out_dir: Path, cib_format: str, fmt: str, move_secrets: bool,
               recipients: tuple[str, ...]) -> None:
    """Write this cluster's configuration as a desired-state folder: corosync.conf, cib.crm or cib.xml
    (what the cluster writes itself left out) and a commented cluster.toml.

    `plan --dir DIR` right after says no change: export checks it, loading the folder as a pass does.
    Exit 0 written; 1 written, but crmsh does not read its text back to the same configuration (the
    objects are named: use --format xml); 2 error."""
    from controller.audit.masking import is_secret_name
    from controller.cib.export import cluster_toml_skeleton, configuration_only, secret_hints, strip_managed
    from controller.cib.xml import to_bytes
    from controller.cluster.adapter import LiveCluster
    from controller.desired.crm import configuration_to_crm
    from controller.errors import HaGitopsError

    cluster = LiveCluster()
    live = cluster.read_cib()
    corosync = cluster.read_file(COROSYNC_CONF)
    if corosync is None:
        raise HaGitopsError(f"{COROSYNC_CONF} cannot be read on this node")
    stripped = strip_managed(live)
    out_dir.mkdir(parents=True, exist_ok=True)
    for other in ("cib.crm", "cib.xml"):  # exactly one of them in a desired folder
        (out_dir / other).unlink(missing_ok=True)
    (out_dir / "corosync.conf").write_text(corosync)
    moved: dict[str, str] = {}
    to_list: list[str] = []  # recipients cluster.toml does not list yet
    if move_secrets:
        moved, to_list = _move_secrets(stripped, out_dir, list(recipients))
    if cib_format == "crm":
        (out_dir / "cib.crm").write_text(configuration_to_crm(stripped))
    else:
        (out_dir / "cib.xml").write_bytes(to_bytes(configuration_only(stripped)) + b"\n")
    policy = out_dir / "cluster.toml"
    kept = policy.exists()  # a policy someone wrote is never replaced by the skeleton
    if not kept:
        policy.write_text(cluster_toml_skeleton(stripped))
    if moved and to_list:
        _list_recipients(policy, to_list)
    # a moved parameter is meant to change: clear text -> lrm:// (every node's store gets it first)
    moved_rscs = {p.get("id") for p in stripped.iter("primitive")
                  if p.xpath("instance_attributes/nvpair[starts-with(@value, '@secret:')]")}
    lost = [f"{c.kind} {c.id} ({c.action})" for c in residual_changes(out_dir, live)
            if not (c.id in moved_rscs and c.action == "modified")]
    hints = secret_hints(stripped, is_secret_name)
    files = ["corosync.conf", f"cib.{cib_format}", "cluster.toml"]
    if fmt == "json":
        print_json({"out": str(out_dir), "files": files, "cluster_toml_kept": kept,
                    "secrets": [h.model_dump() for h in hints], "moved_secrets": sorted(moved),
                    "not_round_tripped": lost})
    else:
        out.print(f"exported {', '.join(files)} to {out_dir}"
                  + (" (the cluster.toml already there was kept)" if kept else ""), markup=False)
        if moved:
            out.print(f"moved {len(moved)} secret(s) into secrets.age: {', '.join(sorted(moved))} (the "
                      "plan now writes lrm:// for them)", markup=False)
        for h in hints:
            err.print(f"warning: {h.text()}", markup=False)
        if hints:
            err.print(f"hint: {len(hints)} clear-text secret-looking parameter(s) would go into git; "
                      + SECRETS_HINT, markup=False)
        if lost:
            err.print("warning: `plan` on the exported folder would not be a no-op (crmsh does not read its "
                      "own text back the same): " + ", ".join(lost)
                      + ("; `--format xml` keeps them exactly" if cib_format == "crm" else ""), markup=False)
    sys.exit(1 if lost else 0)


def _move_secrets(stripped: Any, out_dir: Path, extra: list[str]) -> tuple[dict[str, str], list[str]]:
    """Clear-text secret parameters -> `@secret:` in `stripped`, their values into out_dir/secrets.age."""
    from controller.audit.masking import is_secret_name
    from controller.cib.export import move_secrets
    from controller.desired.policy import load_policy
    from controller.desired.policy_sections import SecretsPolicy
    from controller.secrets.folder import write_secrets
    from controller.secrets.model import SecretsError

    policy = out_dir / "cluster.toml"
    listed = load_policy(policy).secrets.recipients if policy.exists() else []
    recipients = SecretsPolicy(recipients=[*listed, *extra]).recipients
    if not recipients:
        raise SecretsError("--move-secrets: no recipients (cluster.toml [secrets] recipients or --recipient)")
    moved = move_secrets(stripped, is_secret_name)
    if moved:
        write_secrets(out_dir, moved, recipients)
    return moved, recipients if recipients != listed else []


def _list_recipients(policy: Path, recipients: list[str]) -> None:
    """cluster.toml's [secrets] recipients := recipients (a [secrets] table appended when it has none)."""
    import re

    text = policy.read_text()
    line = "recipients = [" + ", ".join(f'"{r}"' for r in recipients) + "]"
    if re.search(r"^recipients\s*=", text, re.M):
        text = re.sub(r"^recipients\s*=.*$", line, text, count=1, flags=re.M)
    elif re.search(r"^\[secrets\]", text, re.M):
        text = re.sub(r"^\[secrets\]\s*$", f"[secrets]\n{line}", text, count=1, flags=re.M)
    else:
        text += f"\n[secrets]\n{line}\n"
    policy.write_text(text)


def residual_changes(folder: Path, live: Any) -> list[Any]:
    """What `plan --dir folder` would still change on `live`: the folder loaded and diffed exactly as a
    pass loads and diffs it (for an export: nothing, unless crmsh reads its own text back differently)."""
    from controller.desired.load import load_desired
    from controller.plan import cib_plan

    changes: list[Any] = cib_plan(load_desired(folder), live).changes
    return changes


def operator_name() -> str:
    """Who runs the command: the user behind sudo when there is one."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


@main.command("adopt")
@CONFIG_OPTION
@DIR_OPTION
@click.option("--yes", is_flag=True, help="Apply without asking (after reading the plan it prints).")
@FORMAT_OPTION
@handles_errors
def adopt_cmd(config: str | None, folder: str | None, yes: bool, fmt: str) -> None:
    """Take over a cluster ha-gitops never managed: show the plan, ask, apply it (deletions included),
    and record who adopted it. Agents that found the cluster wait for this when git would delete.

    Exit 0 applied (or nothing to change), 2 error or declined, 3 refused."""
    import tempfile

    from controller.audit.store import AuditStore
    from controller.decision_render import decision_text
    from controller.errors import HaGitopsError
    from controller.wiring import build_reconciler

    settings = _settings(config)
    rec = build_reconciler(settings)
    with tempfile.TemporaryDirectory(prefix="ha-gitops-adopt-") as work:
        desired = _desired_input(settings, folder, Path(work))
        seen = rec.run_pass(desired, trigger="adopt", role="operator", dry_run=True, adopt=True).decision
        assert seen is not None
        if not seen.first_contact:
            raise HaGitopsError("this cluster is already managed by ha-gitops (it carries the marker): the "
                                "agents follow git; `ha-gitops plan` shows what they do")
        if fmt == "text":
            out.print("Adopting this cluster (ha-gitops never wrote it): the plan", markup=False)
            sys.stdout.write(decision_text(seen))
        if seen.verdict == "refuse" or seen.verdict == "wait":
            if fmt == "json":
                print_json({"adopted": False, "decision": seen.model_dump(mode="json")})
            else:
                err.print("nothing adopted: " + (seen.refusal_text() or seen.verdict), markup=False)
            sys.exit(3 if seen.verdict == "refuse" else 2)
        if not yes:
            if not sys.stdin.isatty():
                raise click.UsageError("adopt asks before it writes, and there is no terminal to ask on: "
                                       "read the plan above and run again with --yes")
            if not click.confirm("Apply this plan and adopt the cluster?", default=False):
                err.print("not adopted: nothing written", markup=False)
                sys.exit(2)
        # Exactly what was shown: the same decision, or refused as stale-plan if anything moved meanwhile.
        result = rec.run_pass(desired, trigger="adopt", role="operator", adopt=True, expect=seen)
    who = operator_name()
    done = APPLY_EXIT[result.outcome] == 0
    record: dict[str, Any] = {}
    if done:
        with AuditStore(settings.audit_url) as store:
            ev = store.append(_adopt_event(settings.node_name, who, result, desired),
                              notify=route("adopt", "success", settings.notify))
        record = {"event": ev.id}
    if fmt == "json":
        print_json({"adopted": done, "by": who, "outcome": result.outcome, "message": result.message,
                    "events": result.events, **record})
    else:
        out.print(f"{result.outcome}: {result.message or '-'}"
                  + (f"; adopted by {who} on {settings.node_name} (audit event {record['event']})"
                     if done else ""), markup=False)
        if result.decision is not None and result.decision.reasons and not done:
            out.print(result.decision.refusal_text(), markup=False)
    sys.exit(APPLY_EXIT[result.outcome])


def _adopt_event(node: str, who: str, result: Any, desired: Any) -> Any:
    from controller.audit.models import NewEvent

    return NewEvent(node=node, kind="adopt", outcome="success", commit=desired.commit,
                    summary=f"cluster adopted by {who} on {node}: {result.outcome} "
                            f"({(result.revision or '-')[:12]})",
                    details={"user": who, "outcome": result.outcome, "revision": result.revision,
                             "events": result.events})
