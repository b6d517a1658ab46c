"""The secrets file's plaintext and what may be said about a secret without saying its value (pure).

Plaintext of secrets.age: one JSON object, name -> string value, written with sorted keys:

    {"ipmi_password": "s3cret", "vmware_password": "..."}

JSON because every value is a string and JSON quoting is exact for any character (TOML's multi-line
rules are not worth the risk for a password). Names: letters, digits, `_`, `-`, `.`, at most 64.

A fingerprint (audit rows, plan output, node attributes) is sha256 over cluster name, secret name and
value, truncated to 16 hex digits: it changes when the value does, it is the same on every machine, and
it names no value. It is not a key derivation: a value short enough to guess could be confirmed against
it by someone who knows the cluster and secret names, so the audit trail still deserves its access rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from controller.errors import InputError

SECRETS_FILE = "secrets.age"
REFERENCE_PREFIX = "@secret:"
# What the CIB holds for a parameter whose value is in Pacemaker's local secrets store (cibsecret).
LRM_VALUE = "lrm://"
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# age recipients: native X25519 (age1...) and the ssh keys age accepts.
RECIPIENT_RE = re.compile(r"age1[0-9a-z]{58}|(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/=]+( \S+)?")


class SecretsError(InputError):
    """A secrets.age problem (cannot decrypt, bad format, unknown name). Never carries a value."""


def check_name(name: str, *, source: str = SECRETS_FILE) -> str:
    if not NAME_RE.fullmatch(name):
        raise SecretsError(f"invalid secret name {name!r}: letters, digits, '_', '-', '.' (at most 64, "
                           "not starting with '-' or '.')", file=source)
    return name


def parse_reference(value: str) -> str | None:
    """The secret name a parameter value `@secret:NAME` refers to, None when it is not a reference."""
    if not value.startswith(REFERENCE_PREFIX):
        return None
    return value[len(REFERENCE_PREFIX):]


def parse_plaintext(text: str, *, source: str = SECRETS_FILE) -> dict[str, str]:
    """Decrypted secrets.age -> {name: value}. Errors name the file and the key, never a value."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        # exc's message quotes no document text, only a position
        raise SecretsError(f"decrypted content is not a JSON object (line {exc.lineno}, column {exc.colno})",
                           file=source) from None
    if not isinstance(data, dict):
        raise SecretsError("decrypted content must be a JSON object of name -> string", file=source)
    out: dict[str, str] = {}
    for name, value in data.items():
        check_name(name, source=source)
        if not isinstance(value, str):
            raise SecretsError(f"secret {name!r}: value must be a string, not {type(value).__name__}",
                               file=source)
        out[name] = value
    return out


def render_plaintext(secrets: Mapping[str, str]) -> str:
    for name in secrets:
        check_name(name)
    return json.dumps(dict(sorted(secrets.items())), indent=1, ensure_ascii=False) + "\n"


def fingerprint(cluster: str, name: str, value: str) -> str:
    """16 hex digits that change with the value and reveal none of it (see the module docstring)."""
    h = hashlib.sha256()
    for part in (cluster, name, value):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]


def store_sign(value: str) -> str:
    """The checksum Pacemaker's local secrets store keeps beside a value (<param>.sign: md5 of the
    value, as cibsecret writes it and pacemaker-execd checks it)."""
    return hashlib.md5(value.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()



def value_problem(value: str) -> str | None:
    """Why Pacemaker's local store could not hold this value exactly, None when it can: the store is a
    text file whose trailing whitespace pacemaker-execd strips, one line."""
    if value == "":
        return "the value is empty"
    if any(c in value for c in "\n\r\0"):
        return "the value holds a newline or NUL character"
    if value != value.strip():
        return "the value starts or ends with whitespace"
    return None
