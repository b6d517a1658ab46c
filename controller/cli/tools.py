"""Offline tools: `corosync diff`, `cib diff`, `validate` (no cluster needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lxml import etree

from controller.cli.common import (
    FORMAT_OPTION,
    exit_without_teardown,
    handles_errors,
    main,
    out,
    print_json,
)

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
    """Drop-in for `crm_diff -o OLD -n NEW` (whole <cib> or bare <configuration> files, or crm syntax:
    a `.crm` file, e.g. a desired folder's cib.crm, read through crmsh as `plan` reads it).
    Exit 0: no change, 1: changes, 2: error."""
    from controller.cib.diff import diff_cib, diff_files  # lazy: keeps `ha-gitops` startup fast

    if old.suffix == ".crm" or new.suffix == ".crm":
        result = diff_cib(_cib_of(old), _cib_of(new), semantic=semantic)
    else:
        result = diff_files(old, new, semantic=semantic)
    if fmt == "xml":
        sys.stdout.write(result.patch_xml())
    elif fmt == "json":
        print_json([c.model_dump() for c in result.objects()])
    else:
        from controller.cib.render import render_text

        sys.stdout.write(render_text(result.objects()) or "no change\n")
    exit_without_teardown(1 if result.changed else 0)



def _cib_of(path: Path) -> etree._Element:
    """A CIB file as a <cib>: XML as it is, crm syntax converted by crmsh (offline, as `plan` does)."""
    from controller.cib.document import load_cib, load_cib_bytes

    if path.suffix != ".crm":
        return load_cib(path)
    from controller.desired.crm import crm_to_configuration
    from controller.desired.crm_syntax import CrmConversionError
    from controller.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", file=str(path)) from exc
    try:
        conv = crm_to_configuration(text, source=str(path))
    except CrmConversionError as exc:  # crmsh rejected the text: an input error like malformed XML
        raise InputError(f"crmsh cannot read it: {exc}", file=str(path)) from exc
    return load_cib_bytes(conv.configuration, source=str(path))


# ---- end cib




# ---- validate


@main.command("validate")
@click.argument("directory", required=False, default="desired/kamailio",
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--agents/--no-agents", "check_agents", default=None,
              help="Check that every resource/fence agent exists on this machine [default: when "
                   "Pacemaker's crm_resource is installed].")
@click.option("--corosync-test/--no-corosync-test", "corosync_test", default=None,
              help="Run `corosync -t` on corosync.conf [default: when corosync is installed].")
@click.option("--sandbox", is_flag=True,
              help="Check agents as the sandbox runs them (systemd: resources as ocf:pacemaker:Dummy).")
@click.option("--identity", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              envvar="HA_GITOPS_AGE_IDENTITY",
              help="An age identity to decrypt secrets.age with, so that every `@secret:NAME` is checked "
                   "against it [default: $HA_GITOPS_AGE_IDENTITY; none: references are not checked].")
@FORMAT_OPTION
@handles_errors
def validate(directory: Path, check_agents: bool | None, corosync_test: bool | None, sandbox: bool,
             identity: Path | None, fmt: str) -> None:
    """Validate a desired-state folder (corosync.conf, cib.crm or cib.xml, cluster.toml) with the checks
    the agent makes. Exit 0: valid (warnings allowed), 2: invalid."""
    from controller.cluster.agents import PacemakerAgents, local_agents
    from controller.cluster.corosync_test import CorosyncTest, local_corosync_check
    from controller.desired import validate_desired
    from controller.desired.substitute import SANDBOX_SUBSTITUTIONS

    agents = local_agents() if check_agents is None else (PacemakerAgents() if check_agents else None)
    coro = local_corosync_check() if corosync_test is None else (CorosyncTest() if corosync_test else None)
    report = validate_desired(directory, agents=agents, corosync_check=coro,
                              substitutions=SANDBOX_SUBSTITUTIONS if sandbox else (), identity=identity)
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

