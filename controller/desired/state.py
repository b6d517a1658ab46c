"""The desired-state folder -> one DesiredState.

Layout of a cluster folder (e.g. desired/kamailio)::

    corosync.conf   required
    cib.crm         the CIB configuration in crm shell syntax (what `crm configure show` prints)
    cib.xml         ... or as XML: a <configuration> element or a whole <cib>   (exactly one of the two)
    cluster.toml    optional policy (see controller.desired.policy)
    secrets.age     optional: the values of `@secret:NAME` parameters, age-encrypted (controller/secrets/)

Loading parses and converts; it does not judge (that is controller.desired.validate). This module is
pure: cib.crm is converted by the function the caller passes (`read_desired(path, convert_crm=...)`);
`controller.desired.load.load_desired` passes crmsh's conversion (controller/desired/crm.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from controller.cib.xml import attr_items, parse_xml_bytes, parse_xml_file, source_line, to_bytes
from controller.corosync import CorosyncConf, CorosyncDocument, corosync_model, parse_corosync
from controller.desired.crm_syntax import CrmConversionError, CrmConverter, crm_id_lines
from controller.desired.findings import DesiredStateError, Finding
from controller.desired.policy import ClusterPolicy, load_policy
from controller.desired.secret_gate import file_digest
from controller.desired.secret_refs import SecretParam, resolve_secret_refs
from controller.errors import InputError
from controller.limits import size_error
from controller.secrets.model import SECRETS_FILE

COROSYNC_FILE = "corosync.conf"
CRM_FILE = "cib.crm"
XML_FILE = "cib.xml"
POLICY_FILE = "cluster.toml"
# (armored ciphertext, file name for messages) -> {name: value}; raises InputError (never quoting a value)
SecretsDecryptor = Callable[[str, str], Mapping[str, str]]


class DesiredState(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    root: Path
    corosync: CorosyncConf
    corosync_text: str
    corosync_file: Path
    cib_file: Path
    cib_format: Literal["crm", "xml"]
    configuration_xml: bytes  # the CIB <configuration> element, serialised
    cib_attributes: dict[str, str]  # <cib> attributes when cib.xml was a whole <cib>, else {}
    id_lines: dict[str, int]  # element id -> line in cib_file, for messages
    policy: ClusterPolicy
    policy_file: Path | None
    digest: str  # sha256 over the source files (name + bytes), stable across machines
    load_messages: list[Finding] = []  # warnings met while loading (e.g. from crmsh)
    # `@secret:NAME` parameters (the configuration holds `lrm://` for each); fingerprints, never values
    secret_params: list[SecretParam] = []
    secrets_decrypted: bool = False  # False: no secrets.age, or no identity to decrypt it here
    secrets_file: str | None = None  # secrets.age's digest (controller.desired.secret_gate.file_digest)
    # The decrypted values the secret parameters need, for the agent's local store only: never
    # serialised (exclude), never printed (repr).
    secret_values: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    def configuration(self) -> etree._Element:
        """A fresh lxml <configuration> element (callers may modify it)."""
        return parse_xml_bytes(self.configuration_xml, source=str(self.cib_file))

    def corosync_document(self) -> CorosyncDocument:
        return parse_corosync(self.corosync_text, source=str(self.corosync_file))


def _check_size(path: Path) -> None:
    """Before anything reads it: a file over its limit (controller.limits) is refused by its size alone."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    message = size_error(path.name, size)
    if message is not None:
        raise InputError(message, file=str(path))


def _read(path: Path) -> bytes:
    _check_size(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc


def _xml_configuration(path: Path) -> tuple[etree._Element, dict[str, str], dict[str, int]]:
    root = parse_xml_file(path)
    # lines of the configuration only: a whole <cib> repeats resource ids in its <status>
    config_root = root.find("configuration") if root.tag == "cib" else root
    lines: dict[str, int] = {}
    for el in (config_root if config_root is not None else root).iter():
        ident, line = el.get("id"), source_line(el)
        if isinstance(el.tag, str) and ident and line is not None:
            lines[ident] = line
    if root.tag == "configuration":
        return root, {}, lines
    if root.tag == "cib":
        config = root.find("configuration")
        if config is None:
            raise InputError("<cib> has no <configuration> element", file=str(path), line=source_line(root))
        return config, dict(attr_items(root)), lines
    raise InputError(f"root element must be <configuration> or <cib>, not <{root.tag}>", file=str(path),
                     line=source_line(root))


def fingerprint_scope(corosync: CorosyncConf | None) -> str:
    """What a secret's fingerprint is salted with (controller/secrets/model.py): the cluster's name."""
    return (corosync.totem.cluster_name if corosync is not None else None) or ""


def read_desired(path: str | Path, *, convert_crm: CrmConverter,
                 decrypt_secrets: SecretsDecryptor | None = None) -> DesiredState:
    """Load a cluster folder. Raises DesiredStateError (an InputError listing every problem with
    file and line) when a file is missing or cannot be parsed/converted. `convert_crm(text, source)`
    turns cib.crm into its <configuration> (controller.desired.load.load_desired: with crmsh).
    `decrypt_secrets` decrypts secrets.age (None: not decrypted here; `@secret:` parameters still
    become `lrm://`, without fingerprints)."""
    folder = Path(path)
    errors: list[Finding] = []
    if not folder.is_dir():
        raise DesiredStateError([Finding(severity="error", file=str(folder),
                                         message="desired-state folder not found")])
    coro_file = folder / COROSYNC_FILE
    crm_file, xml_file, policy_path = folder / CRM_FILE, folder / XML_FILE, folder / POLICY_FILE
    sources: dict[str, bytes] = {}

    corosync: CorosyncConf | None = None
    coro_text = ""
    try:
        data = _read(coro_file)
        sources[COROSYNC_FILE] = data
        coro_text = data.decode("utf-8", errors="surrogateescape")
        corosync = corosync_model(parse_corosync(coro_text, source=str(coro_file)))
    except InputError as exc:
        errors.append(Finding.from_error(exc, str(coro_file)))

    policy = ClusterPolicy()
    if policy_path.exists():
        try:
            sources[POLICY_FILE] = _read(policy_path)  # size-checked before load_policy reads it
            policy = load_policy(policy_path)
        except InputError as exc:
            errors.append(Finding.from_error(exc, str(policy_path)))

    config_xml: bytes | None = None
    cib_attrs: dict[str, str] = {}
    id_lines: dict[str, int] = {}
    messages: list[Finding] = []
    cib_format: Literal["crm", "xml"] = "crm"
    cib_file = crm_file
    if crm_file.exists() and xml_file.exists():
        errors.append(Finding(severity="error", file=str(folder),
                              message=f"both {CRM_FILE} and {XML_FILE} present: keep exactly one"))
    elif crm_file.exists():
        try:
            data = _read(crm_file)
            sources[CRM_FILE] = data
            text = data.decode("utf-8")
            id_lines = crm_id_lines(text)
            conversion = convert_crm(text, str(crm_file))
            config_xml = conversion.configuration
            messages = conversion.messages
        except UnicodeDecodeError as exc:
            errors.append(Finding(severity="error", file=str(crm_file), message=f"not UTF-8: {exc}"))
        except CrmConversionError as exc:
            errors.extend(exc.findings)
        except InputError as exc:
            errors.append(Finding.from_error(exc, str(crm_file)))
    elif xml_file.exists():
        cib_format, cib_file = "xml", xml_file
        try:
            sources[XML_FILE] = _read(xml_file)
            config, cib_attrs, id_lines = _xml_configuration(xml_file)
            config_xml = to_bytes(config)
        except InputError as exc:
            errors.append(Finding.from_error(exc, str(xml_file)))
    else:
        errors.append(Finding(severity="error", file=str(folder),
                              message=f"no CIB configuration: add {CRM_FILE} or {XML_FILE}"))

    secret_params: list[SecretParam] = []
    secret_values: dict[str, str] = {}
    decrypted = False
    secrets_digest: str | None = None
    if config_xml is not None:
        secrets_file = folder / SECRETS_FILE
        secrets: Mapping[str, str] | None = None
        present = secrets_file.exists()
        if present:
            try:
                data = _read(secrets_file)
                sources[SECRETS_FILE] = data  # a rotated value is a new revision digest
                secrets_digest = file_digest(data)
                if decrypt_secrets is not None:
                    secrets = decrypt_secrets(data.decode("utf-8", errors="replace"), str(secrets_file))
                    decrypted = True
            except InputError as exc:
                errors.append(Finding.from_error(exc, str(secrets_file)))
        config = parse_xml_bytes(config_xml, source=str(cib_file))
        secret_params, ref_errors = resolve_secret_refs(
            # corosync's cluster_name, not the folder's name: the agent reads a revision from work/<sha>, a
            # plan from wherever the folder is, and both must name a value by the same fingerprint.
            config, secrets, cluster=fingerprint_scope(corosync), source=str(cib_file), id_lines=id_lines,
            secrets_present=present)
        errors.extend(ref_errors)
        if secret_params:
            config_xml = to_bytes(config)
            if secrets is not None:
                secret_values = {p.name: secrets[p.name] for p in secret_params}

    if errors or corosync is None or config_xml is None:
        raise DesiredStateError(errors)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + hashlib.sha256(sources[name]).digest())
    return DesiredState(
        name=folder.resolve().name, root=folder, corosync=corosync, corosync_text=coro_text,
        corosync_file=coro_file, cib_file=cib_file, cib_format=cib_format, configuration_xml=config_xml,
        cib_attributes=cib_attrs, id_lines=id_lines, policy=policy,
        policy_file=policy_path if policy_path.exists() else None, digest=digest.hexdigest(),
        load_messages=messages, secret_params=secret_params, secrets_decrypted=decrypted,
        secrets_file=secrets_digest, secret_values=secret_values)
