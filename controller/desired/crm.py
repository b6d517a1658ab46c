"""crm shell syntax -> CIB <configuration>, converted by crmsh itself, offline, and cached.

crmsh is the reference implementation of its own language, so we do not re-implement it: an empty
CIB file is created with ``cibadmin --empty`` and ``crm -F configure load replace FILE`` runs with
``CIB_file`` pointing at it (never the live cluster), no stdin, a throw-away HOME and no colours.
A call costs about half a second (more with the text's size: its time budget grows with it,
controller/limits.py `crm_budget`, and a timeout is an error naming the budget), so results are
cached by the hash of the crm text, the crmsh version and the empty CIB template, in
``$HA_GITOPS_CRM_CACHE`` (default /var/cache/ha-gitops when writable, else ~/.cache/ha-gitops; not
``HA_GITOPS_CACHE_DIR``, which is the agent's `cache_dir` setting, its clone of the repository).

crmsh numbers its messages by *statement* (lines joined at trailing backslashes, blank lines
dropped, comment lines counted - crmsh's utils.lines2cli); ``crm_statements`` (crm_syntax.py) redoes
that split so a message maps back to the physical line of the file. Messages without a number are
mapped through the element id they mention.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from lxml import etree

from controller.cib.xml import parse_xml_bytes, to_bytes
from controller.command import Result, run
from controller.desired.crm_syntax import (
    CrmConversion,
    CrmConversionError,
    Statement,
    crm_id_lines,
    crm_statements,
)
from controller.desired.findings import Finding, Severity
from controller.env_names import CRM_CACHE_ENV
from controller.errors import CommandError, HaGitopsError
from controller.limits import TimeBudget, crm_budget

# cache key -> the budget a conversion of that text ran out of, in this process. A pass converts on every
# trigger (pushes, polls, CIB changes): retrying a text that cannot convert in time would block every
# pass for the whole budget, forever. Retried once the budget is larger, or the process restarts.
_TIMED_OUT: dict[str, float] = {}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_AGENT_MISSING = re.compile(r"got no meta-data|no such resource agent|does this RA exist", re.I)
_MESSAGE = re.compile(r"^(?P<level>ERROR|WARNING|INFO|CRIT|DEBUG): (?:(?P<num>\d+): )?(?P<text>.*)$")


class CrmRunner(Protocol):
    """Runs the `crm` command line: controller.command.run (a new process) or a warm crmsh
    (controller/desired/crm_worker.py), which also takes the text to keep its metadata for."""

    def __call__(self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None,
                 check: bool, warm: str | None = None) -> Result: ...


def _run_once(argv: list[str], *, timeout: float, env: Mapping[str, str] | None, check: bool,
              warm: str | None = None) -> Result:
    return run(argv, timeout=timeout, env=env, check=check)


def cache_dir() -> Path:
    env = os.environ.get(CRM_CACHE_ENV)
    if env:
        return Path(env)
    system = Path("/var/cache/ha-gitops")
    if os.access(system if system.exists() else system.parent, os.W_OK):
        return system
    return Path.home() / ".cache" / "ha-gitops"


@functools.lru_cache(maxsize=1)
def crmsh_version() -> str:
    """`crm --version`, remembered on disk beside the conversions: asking costs a crmsh start (0.6 s) in
    every process that converts, a cache hit included. Keyed by the crm program's inode, size and mtime,
    which any reinstall or upgrade of crmsh changes (dpkg unpacks every file anew)."""
    crm = shutil.which("crm")
    memo: Path | None = None
    if crm is not None:
        st = Path(crm).resolve().stat()
        memo = cache_dir() / "crm" / f"version-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}.txt"
        with contextlib.suppress(OSError):
            return memo.read_text()
    with tempfile.TemporaryDirectory(prefix="ha-gitops-crm-") as home:  # crmsh writes under HOME
        version = run(["crm", "--version"], timeout=60, env=_crm_env(Path(home))).stdout.strip()
    if memo is not None:
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(version)
            os.replace(tmp, memo)
    return version


@functools.lru_cache(maxsize=1)
def empty_cib() -> str:
    """The empty CIB of the installed Pacemaker (its schema version and feature set)."""
    return run(["cibadmin", "--empty"], timeout=30).stdout


def _crm_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "TERM": "dumb", "PAGER": "cat", "EDITOR": "true", "LC_ALL": "C.UTF-8",
            "CIB_shadow": "", "NO_COLOR": "1", "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config")}


def _cache_key(text: str) -> str:
    h = hashlib.sha256()
    for part in (crmsh_version(), empty_cib(), text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _locate(text: str, statements: list[Statement],
            id_lines: dict[str, int]) -> tuple[int | None, str | None]:
    """Line and element id for a message without a statement number: the first word naming a
    defined element (``g refers to missing object x`` -> g), else the first statement using an
    identifier-like word of the message (``Reference not found: p0-state``, ``systemd:foo``)."""
    words = [w.strip("'\"<>,.()?") for w in text.split()]
    for w in words:
        if w in id_lines:
            return id_lines[w], w
    for w in words:
        w = w.rstrip(":")
        if len(w) < 3 or w.isalpha():  # plain words of the message itself are no evidence
            continue
        pattern = re.compile(rf"(?<![\w.-]){re.escape(w)}(?![\w.-])")
        hits = [st for st in statements if not st.text.startswith("#") and pattern.search(st.text)]
        if hits:
            ids = hits[0].ids
            return hits[0].first_line, ids[0] if ids else None
    return None, None


def _findings(stderr: str, text: str, source: str, failed: bool) -> list[Finding]:
    statements = crm_statements(text)
    id_lines = crm_id_lines(text)
    out: list[Finding] = []
    for raw in _ANSI.sub("", stderr).splitlines():
        m = _MESSAGE.match(raw.strip())
        if not m or m.group("level") in ("INFO", "DEBUG"):
            continue
        msg = m.group("text").strip()
        if (msg.startswith("(") or msg.startswith("crm_verify:")) and not failed:
            continue  # crmsh echoing crm_verify on commit: our own verification reports those
        line: int | None = None
        element: str | None = None
        if m.group("num"):
            num = int(m.group("num"))
            st = next((s for s in statements if s.number == num), None)
            if st is not None:
                line = st.first_line
                element = st.ids[0] if st.ids else None
        if line is None:
            line, element = _locate(msg, statements, id_lines)
        # with -F crmsh commits past its complaints; those about an agent missing on *this* host
        # (it cannot read its metadata) say nothing about the cluster, so they are warnings
        is_error = m.group("level") in ("ERROR", "CRIT") and (failed or not _AGENT_MISSING.search(msg))
        severity: Severity = "error" if is_error else "warning"
        finding = Finding(severity=severity, file=source, line=line, element=element, message=f"crmsh: {msg}")
        if finding not in out:
            out.append(finding)
    return out


def crm_to_configuration(text: str, source: str = "cib.crm", *, use_cache: bool = True,
                         runner: CrmRunner | None = None, budget: TimeBudget | None = None) -> CrmConversion:
    """Convert crm configure syntax to the CIB <configuration> XML bytes crmsh produces.

    `runner` runs the crm command line (default: a new crm process); `budget` how long it may take
    (default: crm_budget(text), growing with the text).
    Raises CrmConversionError (with file/line findings) when crmsh rejects the text or runs past its
    budget."""
    budget = budget or crm_budget(text)
    key = _cache_key(text)
    cache_file = cache_dir() / "crm" / f"{key}.json"
    if use_cache and cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text())
            msgs = [Finding.model_validate({**m, "file": source}) for m in data["messages"]]
            return CrmConversion(configuration=data["configuration"].encode(), messages=msgs, cached=True)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    def timed_out() -> CrmConversionError:
        return CrmConversionError([Finding(severity="error", file=source, message=budget.timeout_message(
            "crmsh's conversion (crm configure load replace)"))])

    if _TIMED_OUT.get(key, -1.0) >= budget.seconds:
        raise timed_out()
    with tempfile.TemporaryDirectory(prefix="ha-gitops-crm-") as tmp:
        tmpdir = Path(tmp)
        cib = tmpdir / "cib.xml"
        cib.write_text(empty_cib())
        crm_file = tmpdir / "input.crm"
        crm_file.write_text(text)
        try:
            result = (runner or _run_once)(["crm", "-F", "configure", "load", "replace", str(crm_file)],
                                           timeout=budget.seconds,
                                           env={**_crm_env(tmpdir), "CIB_file": str(cib)}, check=False,
                                           warm=text)
        except CommandError as exc:
            if exc.timeout is None:
                raise
            _TIMED_OUT[key] = budget.seconds  # not on disk: after a restart, or given more time, it may
            raise timed_out() from exc
        failed = result.returncode != 0
        findings = _findings(result.stderr + "\n" + result.stdout, text, source, failed)
        if failed:
            if not any(f.severity == "error" for f in findings):
                detail = _ANSI.sub("", result.stderr or result.stdout).strip() or f"exit {result.returncode}"
                findings.append(Finding(severity="error", file=source, message=f"crmsh: {detail}"))
            raise CrmConversionError(findings)
        root = parse_xml_bytes(cib.read_bytes(), source=f"{source} (as converted by crmsh)")
    config = root.find("configuration")
    if config is None:
        raise CrmConversionError([Finding(severity="error", file=source,
                                          message="crmsh produced a CIB without <configuration>")])
    xml = to_bytes(config)
    if use_cache:
        _store(cache_file, xml, findings)
    return CrmConversion(configuration=xml, messages=findings)


def _store(path: Path, xml: bytes, findings: list[Finding]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"crmsh": crmsh_version(), "configuration": xml.decode(),
                                   "messages": [f.model_dump() for f in findings]}))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new entry
    except OSError:
        pass  # an unwritable cache only costs speed


def configuration_to_crm(cib: etree._Element, *, budget: TimeBudget | None = None) -> str:
    """The reverse of crm_to_configuration: crmsh's own `configure show` of a <cib>, offline.

    `crm configure show` runs with CIB_file pointing at a copy of `cib` in a scratch directory (never the
    live cluster), in the same environment as the conversion. Its budget grows with the CIB as the
    conversion's does with the text (crm_budget of the XML, which is larger: a wider margin)."""
    cib = copy.deepcopy(cib)
    # What the schema requires of a <cib> and an export leaves out (the version, <status>).
    for name in ("admin_epoch", "epoch", "num_updates"):
        cib.set(name, cib.get(name) or "0")
    if cib.find("status") is None:
        etree.SubElement(cib, "status")
    xml = to_bytes(cib).decode()
    budget = budget or crm_budget(xml)
    with tempfile.TemporaryDirectory(prefix="ha-gitops-crm-") as tmp:
        tmpdir = Path(tmp)
        cib_file = tmpdir / "cib.xml"
        cib_file.write_text(xml)
        # crmsh prints passw* values as "****" by default (core.obscure_pattern): an export must keep them.
        conf = tmpdir / ".config" / "crm" / "crm.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text("[core]\nobscure_pattern =\n")
        try:
            result = run(["crm", "configure", "show"], timeout=budget.seconds,
                         env={**_crm_env(tmpdir), "CIB_file": str(cib_file)}, check=False)
        except CommandError as exc:
            if exc.timeout is None:
                raise
            raise HaGitopsError(budget.timeout_message("crmsh's `configure show`")) from exc
    stderr = _ANSI.sub("", result.stderr).strip()
    if result.returncode != 0 or not result.stdout.strip():
        raise HaGitopsError(f"crm configure show failed (exit {result.returncode}): "
                            f"{stderr or 'no output'}")
    return _ANSI.sub("", result.stdout).rstrip("\n") + "\n"
