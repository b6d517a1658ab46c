"""`@secret:NAME` parameter values -> `lrm://` in the effective configuration (pure).

Only a primitive's own instance attributes may refer to a secret: that is what Pacemaker's local
secrets store (cibsecret's layout, /var/lib/pacemaker/lrm/secrets/<resource>/<parameter>) covers, and
what pacemaker-execd substitutes before it runs the agent. The configuration gets `lrm://`, so the CIB
diff compares `lrm://` on both sides; what changes with the value is the fingerprint recorded here.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree
from pydantic import BaseModel, ConfigDict

from controller.desired.findings import Finding
from controller.secrets.model import (
    LRM_VALUE,
    NAME_RE,
    SECRETS_FILE,
    fingerprint,
    parse_reference,
    value_problem,
)


class SecretParam(BaseModel):
    """One resource parameter whose value is a secret. `fingerprint` is None when the secrets were not
    decrypted here (no identity: a plan on a machine that is not a recipient)."""

    model_config = ConfigDict(frozen=True)

    resource: str
    param: str
    name: str
    fingerprint: str | None = None


def _line(el: etree._Element, id_lines: Mapping[str, int], rsc: str | None) -> int | None:
    # the configuration was re-serialised: its own line numbers are not the file's, the ids' are
    return id_lines.get(el.get("id") or "") or (id_lines.get(rsc) if rsc else None)


def _problem(nv: etree._Element, name: str, rsc: str | None, taken: set[tuple[str, str]],
             secrets: Mapping[str, str] | None, secrets_present: bool) -> str | None:
    parent = nv.getparent()
    rsc_el = parent.getparent() if parent is not None else None
    if parent is None or parent.tag != "instance_attributes" or rsc_el is None \
            or rsc_el.tag != "primitive" or not rsc:
        return ("@secret: only in a primitive's instance attributes (params): Pacemaker's local secrets "
                "store holds resource parameters only")
    if not NAME_RE.fullmatch(name):
        return f"@secret:{name}: invalid secret name"
    if (rsc, nv.get("name") or "") in taken:
        return "this parameter refers to a secret twice (several instance_attributes sets)"
    if not secrets_present:
        return f"refers to secret {name!r} but the folder has no {SECRETS_FILE}"
    if secrets is None:
        return None
    if name not in secrets:
        return f"unknown secret {name!r}: not in {SECRETS_FILE} (ha-gitops secret set {name} --dir ...)"
    problem = value_problem(secrets[name])
    return f"secret {name!r}: {problem} (Pacemaker's local secrets store cannot hold it)" if problem else None


def resolve_secret_refs(config: etree._Element, secrets: Mapping[str, str] | None, *, cluster: str,
                        source: str, id_lines: Mapping[str, int] | None = None,
                        secrets_present: bool = True
                        ) -> tuple[list[SecretParam], list[Finding]]:
    """Rewrite every `@secret:NAME` nvpair value of `config` (in place) to `lrm://`. `secrets` is the
    decrypted secrets.age (None: not decrypted here, names not checked). Returns the secret parameters
    and the problems (never quoting a value)."""
    lines = id_lines or {}
    params: list[SecretParam] = []
    errors: list[Finding] = []
    taken: set[tuple[str, str]] = set()
    for nv in config.iter("nvpair"):
        name = parse_reference(nv.get("value") or "")
        if name is None:
            continue
        parent = nv.getparent()
        rsc_el = parent.getparent() if parent is not None else None
        rsc = rsc_el.get("id") if rsc_el is not None else None
        param = nv.get("name") or ""
        problem = _problem(nv, name, rsc, taken, secrets, secrets_present)
        if problem or not rsc:
            errors.append(Finding(severity="error", file=source, line=_line(nv, lines, rsc),
                                  element=f"{rsc}.{param}" if rsc else param, message=problem or ""))
            continue
        taken.add((rsc, param))
        fp = fingerprint(cluster, name, secrets[name]) if secrets is not None else None
        nv.set("value", LRM_VALUE)
        params.append(SecretParam(resource=rsc, param=param, name=name, fingerprint=fp))
    return params, errors
