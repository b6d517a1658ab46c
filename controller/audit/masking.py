"""Masking secret parameter values for display and export. Pure: text in, text out.

The trail STORES real values (a rollback must restore the real configuration); everything that shows or
exports an event masks it first (AuditEvent.masked()). Protect the database itself accordingly.

Which names are secret (case-insensitive; a name is split into words at '-', '_', '.', spaces and
camelCase humps, e.g. `snmpPrivPasswd` -> snmp, priv, passwd):
- it contains one of SECRET_SUBSTRINGS anywhere (password, passwd, passphrase, secret, credential,
  apikey, privkey, authkey): `replication_passwd`, `mypassword`, `client_secret`;
- or one of its words is in SECRET_WORDS (key, pass, pwd, psk, community, kg): `api_key`,
  `ssh-key`, `key`, `snmp_community`, `hexadecimal_kg` - but not `monkey`, `keyboard`, `passive`,
  `bypass` (whole words only);
- or its last word is `token` (`token`, `auth_token`, `api_token`): a token only when the name is
  about one; `token_coefficient`, `token_retransmit` are about something else;
- unless its last word names a location, not the secret (file, path, dir, script): `key_file`,
  `identity_file`, `passwd_script` show in clear, they are paths.
Corosync's own names are never tokens: in corosync.conf (`corosync=True`) and in any dotted corosync
or cmap key (`totem.token`, `runtime.config.totem.token`, `quorum.*`, ...), `token` is the totem
token's timing (token: 3000), not a secret; a real secret there (a `key`, a `password`) still is one.

Masked: the value attribute of any element with a secret name attribute (nvpair), a patch's
change-attr value for such an nvpair (found by the change-result or the nvpair id in the path), JSON
keys and {"name" (or a diff's "field"): ..., "value"/"old"/"new"...} objects, `name=value` /
`name: value` in free text; and then every literal secret value found that way is also blanked
wherever else it appears in the event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from lxml import etree

MASK = "****"
SECRET_SUBSTRINGS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "privkey",
                     "authkey")
SECRET_WORDS = frozenset({"key", "pass", "pwd", "psk", "community", "kg"})
TOKEN = "token"  # secret as the last word only (see above)
# First component of a dotted corosync.conf or cmap key (corosync.conf(5), votequorum(5), cmap_keys(8)).
COROSYNC_SECTIONS = frozenset({"totem", "nodelist", "quorum", "logging", "system", "resources", "nozzle",
                               "uidgid", "qb", "runtime", "config"})
LOCATION_WORDS = frozenset({"file", "path", "dir", "script"})
MIN_SCRUB_LEN = 4  # shorter literal values ("1", "yes") would blank unrelated text
_VALUE_KEYS = ("value", "old", "new", "before", "after", "old_value", "new_value", "from", "to")

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(name) if w]


def _corosync_key(name: str) -> bool:
    head, dot, _ = name.partition(".")
    return bool(dot) and head.lower() in COROSYNC_SECTIONS


def is_secret_name(name: str, *, corosync: bool = False) -> bool:
    words = _words(name)
    if not words or words[-1] in LOCATION_WORDS:
        return False
    if corosync or _corosync_key(name):
        words = [w for w in words if w != TOKEN]
        if not words:
            return False
    flat = "".join(words)
    if any(s in flat for s in SECRET_SUBSTRINGS):
        return True
    return words[-1] == TOKEN or any(w in SECRET_WORDS for w in words)


# ---- XML (configurations and patches)

def _parser() -> etree.XMLParser:
    # Same hardening as controller/cib (no DTD, entities, network); blanks kept so output reads as stored.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


_ID_IN_PATH = re.compile(r"""nvpair\[@id=['"]([^'"]+)['"]\]\s*$""")


def _mask_tree(root: etree._Element, found: set[str]) -> None:
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        name = el.get("name")
        if el.tag != "change-attr" and name and "value" in el.attrib and is_secret_name(name):
            found.add(el.get("value", ""))
            el.set("value", MASK)
        if el.tag == "change" and el.get("operation") == "modify":
            target = el.find("change-result/nvpair")
            m = _ID_IN_PATH.search(el.get("path", ""))
            secret = (target is not None and is_secret_name(target.get("name", ""))) or (
                target is None and m is not None and is_secret_name(m.group(1)))
            if secret:
                for attr in el.iterfind("change-list/change-attr[@name='value']"):
                    if "value" in attr.attrib:
                        found.add(attr.get("value", ""))
                        attr.set("value", MASK)


_TAG = re.compile(r"<[^<>]*>")
_ATTR = re.compile(r"""(\b[\w:.-]+)\s*=\s*("[^"]*"|'[^']*')""")


def _mask_tags_text(text: str, found: set[str]) -> str:
    """Fallback for text that is not well-formed XML: mask per tag, never fail open."""

    def one_tag(m: re.Match[str]) -> str:
        tag = m.group(0)
        attrs = {a.group(1): a.group(2)[1:-1] for a in _ATTR.finditer(tag)}
        if "value" in attrs and is_secret_name(attrs.get("name", "")):
            found.add(attrs["value"])
            return _ATTR.sub(lambda a: f'{a.group(1)}="{MASK}"' if a.group(1) == "value" else a.group(0), tag)
        return tag

    return _TAG.sub(one_tag, text)


def mask_xml(text: str | None, found: set[str] | None = None) -> str | None:
    if text is None:
        return None
    found = found if found is not None else set()
    try:
        root = etree.fromstring(text.encode("utf-8"), _parser())
        if root.getroottree().docinfo.internalDTD is not None:
            raise ValueError("DTD")
    except (etree.XMLSyntaxError, ValueError):
        return _mask_text(_mask_tags_text(text, found), found)
    _mask_tree(root, found)
    return etree.tostring(root, encoding="unicode")


# ---- free text (human diffs, errors, corosync.conf)

_NAME = r"[A-Za-z][\w.-]*"
_VAL = r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s,;"'}\]]+)"""
# name=value, name: value, name = value, optionally "old -> new" (human diffs)
_KV = re.compile(rf"(?P<name>{_NAME})(?P<sep>\s*[=:]\s*)(?P<val>{_VAL}(?:\s*(?:->|=>|→)\s*{_VAL})?)")
_ARROW = re.compile(r"\s*(?:->|=>|→)\s*")


def _mask_text(text: str, found: set[str], *, corosync: bool = False) -> str:
    def kv(m: re.Match[str]) -> str:
        parts = _ARROW.split(m.group("val"))
        arrows = _ARROW.findall(m.group("val"))
        for p in parts:
            found.add(p.strip("\"'"))
        masked = [MASK] * len(parts)
        out = masked[0] + "".join(a + v for a, v in zip(arrows, masked[1:], strict=True))
        return f"{m.group('name')}{m.group('sep')}{out}"

    text = _mask_tags_text(text, found)
    # A non-secret match gives back its value part, so `error: password=x` still finds `password`.
    parts: list[str] = []
    pos = 0
    while (m := _KV.search(text, pos)) is not None:
        if is_secret_name(m.group("name"), corosync=corosync):
            parts.append(text[pos:m.start()] + kv(m))
            pos = m.end()
        else:
            parts.append(text[pos:m.start("val")])
            pos = m.start("val")
    parts.append(text[pos:])
    return "".join(parts)


def mask_text(text: str | None, found: set[str] | None = None, *, corosync: bool = False) -> str | None:
    if text is None:
        return None
    return _mask_text(text, found if found is not None else set(), corosync=corosync)


# ---- JSON values (human diff structures, details)

def mask_json(value: Any, found: set[str] | None = None) -> Any:
    found = found if found is not None else set()
    if isinstance(value, dict):
        # {"name": ..., "value": ...} (an nvpair), or a diff's field change {"field": "params.passwd", ...}
        name = value.get("name", value.get("field"))
        secret_pair = isinstance(name, str) and is_secret_name(name)
        out: dict[str, Any] = {}
        for k, v in value.items():
            if (isinstance(k, str) and is_secret_name(k) and not isinstance(v, dict | list)) or (
                    secret_pair and k in _VALUE_KEYS):
                if v is not None:
                    found.add(str(v))
                    out[k] = MASK
                else:
                    out[k] = None
            else:
                out[k] = mask_json(v, found)
        return out
    if isinstance(value, list):
        return [mask_json(v, found) for v in value]
    if isinstance(value, str):
        return mask_text(value, found)
    return value


# ---- literal scrub: a secret seen in one field is blanked in all of them

def _scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    for s in secrets:
        text = text.replace(s, MASK)
    return text


def _scrub_json(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(v, secrets) for v in value]
    if isinstance(value, str):
        return _scrub(value, secrets)
    return value


class MaskableEvent(Protocol):
    """The fields of an audit event that can hold secrets (models.AuditEvent has them all)."""

    @property
    def config_before(self) -> str | None: ...
    @property
    def config_after(self) -> str | None: ...
    @property
    def patch(self) -> str | None: ...
    @property
    def corosync_before(self) -> str | None: ...
    @property
    def corosync_after(self) -> str | None: ...
    @property
    def diff(self) -> Any: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def summary(self) -> str | None: ...


def masked_fields(event: MaskableEvent) -> dict[str, Any]:
    """The event's secret-bearing fields, masked: an update for `model_copy` (AuditEvent.masked())."""
    found: set[str] = set()
    fields: dict[str, Any] = {
        "config_before": mask_xml(event.config_before, found),
        "config_after": mask_xml(event.config_after, found),
        "patch": mask_xml(event.patch, found),
        "corosync_before": mask_text(event.corosync_before, found, corosync=True),
        "corosync_after": mask_text(event.corosync_after, found, corosync=True),
        "diff": mask_json(event.diff, found),
        "details": mask_json(event.details, found),
        "error": mask_text(event.error, found),
        "summary": mask_text(event.summary, found),
    }
    # Longest first, so a secret containing another is blanked whole.
    secrets = sorted({s for s in found if len(s) >= MIN_SCRUB_LEN and s != MASK}, key=len, reverse=True)
    for name in ("config_before", "config_after", "patch", "corosync_before", "corosync_after", "error",
                 "summary"):
        fields[name] = _scrub(fields[name], secrets)
    fields["diff"] = _scrub_json(fields["diff"], secrets)
    fields["details"] = _scrub_json(fields["details"], secrets)
    return fields
