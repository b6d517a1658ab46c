"""`ha-gitops secret set|list|rm|recipients`: edit a desired folder's secrets.age.

A value comes from stdin (or a hidden prompt on a terminal), never from argv: argv is visible to every
user of the machine and lands in shell history. Output names secrets and fingerprints, never values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from controller.cli.common import FORMAT_OPTION, err, handles_errors, main, out, print_json
from controller.errors import HaGitopsError

DIR_OPTION = click.option("--dir", "folder", required=True, metavar="DIR",
                          type=click.Path(file_okay=False, exists=True, path_type=Path),
                          help="The desired-state folder (its cluster.toml lists the recipients).")
IDENTITY_OPTION = click.option(
    "--identity", "identity", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
    default=None, help="Your age identity, to decrypt the current values (default: "
    "$HA_GITOPS_AGE_IDENTITY, else ~/.config/ha-gitops/age.key).")


def default_identity() -> Path:
    env = os.environ.get("HA_GITOPS_AGE_IDENTITY")
    return Path(env) if env else Path.home() / ".config" / "ha-gitops" / "age.key"


def _recipients(folder: Path) -> list[str]:
    from controller.desired.policy import load_policy
    from controller.desired.state import POLICY_FILE
    from controller.secrets.model import SecretsError

    path = folder / POLICY_FILE
    if not path.exists():
        raise SecretsError("no cluster.toml: list the recipients in its [secrets] recipients", file=str(path))
    recipients = load_policy(path).secrets.recipients
    if not recipients:
        raise SecretsError("[secrets] recipients is empty: list every node's age recipient and the "
                           "operators'", file=str(path))
    return recipients


def _fingerprint_scope(folder: Path) -> str:
    """The folder's cluster name, as the agents and `plan` salt fingerprints with (empty without one)."""
    from controller.corosync import corosync_model, parse_corosync
    from controller.desired.state import COROSYNC_FILE, fingerprint_scope

    path = folder / COROSYNC_FILE
    try:
        return fingerprint_scope(corosync_model(parse_corosync(path.read_text(), source=str(path))))
    except (OSError, HaGitopsError):
        return ""


def _current(folder: Path, identity: Path | None) -> dict[str, str]:
    from controller.secrets.folder import read_ciphertext, read_secrets

    if read_ciphertext(folder) is None:
        return {}
    return read_secrets(folder, identity or default_identity())


def _write(folder: Path, secrets: dict[str, str], identity: Path | None) -> None:
    from controller.secrets import age
    from controller.secrets.folder import write_secrets

    recipients = _recipients(folder)
    ident = identity or default_identity()
    if ident.is_file():
        mine = age.recipient_of(ident)
        if mine not in recipients:
            err.print(f"warning: your identity's recipient {mine} is not in [secrets] recipients: you "
                      "will not be able to decrypt secrets.age again", markup=False)
    path = write_secrets(folder, secrets, recipients)
    err.print(f"wrote {path} ({len(secrets)} secret(s), {len(recipients)} recipient(s))", markup=False)


@main.group("secret")
def secret() -> None:
    """Secrets in the desired folder's secrets.age (age-encrypted): `@secret:NAME` in cib.crm/cib.xml."""


@secret.command("set")
@click.argument("name")
@DIR_OPTION
@IDENTITY_OPTION
@handles_errors
def secret_set(name: str, folder: Path, identity: Path | None) -> None:
    """Set secret NAME to the value read from stdin (one trailing newline dropped), re-encrypting
    secrets.age to cluster.toml's [secrets] recipients. Exit 0 written, 2 error."""
    from controller.secrets.model import SecretsError, check_name, value_problem

    check_name(name)
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    problem = value_problem(value)
    if problem:
        raise SecretsError(f"secret {name!r}: {problem} (Pacemaker's local secrets store cannot hold it)")
    secrets = _current(folder, identity)
    secrets[name] = value
    _write(folder, secrets, identity)


@secret.command("rm")
@click.argument("name")
@DIR_OPTION
@IDENTITY_OPTION
@handles_errors
def secret_rm(name: str, folder: Path, identity: Path | None) -> None:
    """Remove secret NAME from secrets.age. Exit 0 removed, 2 error (not there)."""
    from controller.secrets.model import SecretsError

    secrets = _current(folder, identity)
    if name not in secrets:
        raise SecretsError(f"no secret named {name!r}", file=str(folder / "secrets.age"))
    del secrets[name]
    _write(folder, secrets, identity)


@secret.command("list")
@DIR_OPTION
@IDENTITY_OPTION
@FORMAT_OPTION
@handles_errors
def secret_list(folder: Path, identity: Path | None, fmt: str) -> None:
    """The secrets' names and fingerprints (never their values). Exit 0, 2 error."""
    from controller.secrets.model import fingerprint

    cluster = _fingerprint_scope(folder)
    rows = [{"name": n, "fingerprint": fingerprint(cluster, n, v)}
            for n, v in sorted(_current(folder, identity).items())]
    if fmt == "json":
        print_json(rows)
    elif not rows:
        out.print("no secrets")
    else:
        for r in rows:
            out.print(f"{r['name']}  {r['fingerprint']}", markup=False)


@secret.command("recipients")
@DIR_OPTION
@IDENTITY_OPTION
@handles_errors
def secret_recipients(folder: Path, identity: Path | None) -> None:
    """Re-encrypt secrets.age to the recipients cluster.toml lists now (after adding a node or an
    operator, or removing one: rotate the values a removed recipient knew). Exit 0, 2 error."""
    _write(folder, _current(folder, identity), identity)
