"""A desired folder's secrets made fit for a preview sandbox (pure).

The preview's nodes have their own age identities, which no secrets.age lists: left as it is, every
folder that uses `@secret:` would be refused there (`secrets`: a node cannot decrypt) and the preview would
say nothing about the change. So each side's secrets.age is replaced by one encrypted to the preview's
nodes, holding either the real values (the operator gave an identity that can decrypt it) or, without
one, a placeholder for every name the configuration refers to: the same placeholder on both sides, so a
secret-only change shows as no change, and the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controller.secrets.model import NAME_RE, REFERENCE_PREFIX, SECRETS_FILE

CONFIG_FILES = ("cib.crm", "cib.xml")
_REFERENCE = re.compile(re.escape(REFERENCE_PREFIX) + "(" + NAME_RE.pattern + ")")

SecretsMode = Literal["none", "real", "placeholder"]


class PreviewSecrets(BaseModel):
    """How the preview dealt with secrets, for its report."""

    model_config = ConfigDict(frozen=True)

    mode: SecretsMode = "none"
    names: list[str] = []  # the secrets the preview's folders hold (never a value)

    def note(self) -> str | None:
        if self.mode == "none":
            return None
        names = ", ".join(self.names) or "none"
        if self.mode == "real":
            return (f"secrets ({names}): the real values, decrypted with the identity given and encrypted to "
                    "the preview's own nodes")
        return (f"secrets ({names}): placeholders (no --identity to decrypt secrets.age): the same value on "
                "both sides, so a change of a secret's value alone is not previewed")


def referenced_names(files: Mapping[str, str]) -> set[str]:
    """Every NAME of `@secret:NAME` in the folder's configuration file (a reference inside a comment is
    counted too: a placeholder too many costs nothing)."""
    return {m.group(1) for f in CONFIG_FILES for m in _REFERENCE.finditer(files.get(f, ""))}


def uses_secrets(files: Mapping[str, str]) -> bool:
    return SECRETS_FILE in files or bool(referenced_names(files))


def placeholder(name: str) -> str:
    """A value Pacemaker's local store can hold (one line, no surrounding whitespace)."""
    return f"preview-placeholder-{name}"


def preview_values(files: Mapping[str, str], decrypted: Mapping[str, str] | None) -> dict[str, str]:
    """The values one side's secrets.age holds on the preview's nodes: the decrypted ones, or a placeholder
    for each name its configuration refers to."""
    if decrypted is not None:
        return dict(decrypted)
    return {name: placeholder(name) for name in sorted(referenced_names(files))}


__all__ = ["PreviewSecrets", "placeholder", "preview_values", "referenced_names", "uses_secrets"]
