"""Check a desired CIB configuration with Pacemaker's own crm_verify (schema + configuration).

crm_verify needs a whole CIB. The configuration is wrapped in the <cib> it came with (cib.xml) or
the installed Pacemaker's empty CIB, and a synthetic <status> marks every configured node as an
online member: with an empty status every node counts as unclean and crm_verify would report
fencing of all nodes, an artefact of checking offline rather than a property of the config.

Its messages are mapped back to element ids (schema errors carry a line of the temporary file:
the element there gives the id) and from ids to lines of the source file. Fencing complaints
(no STONITH resource, stonith disabled...) are warnings: a policy decision, not a broken file.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from lxml import etree

from controller.cib.xml import attr_items, parse_xml_bytes, source_line, to_bytes
from controller.command import run
from controller.desired.crm import empty_cib
from controller.desired.findings import Finding, Severity
from controller.desired.state import DesiredState

VERIFY_TIMEOUT = 120.0
_SCHEMA = re.compile(r"^(?P<file>.+?):(?P<line>\d+): element (?P<tag>[^:\s]+): (?P<msg>.*)$")
_LOG = re.compile(r"^\((?P<fn>[^)]*)\)\s+(?P<sev>error|warning|crit):\s*(?P<msg>.*)$")
# the closing line crm_verify prints after its messages (the messages carry the verdict)
_SUMMARY = re.compile(r"^(crm_verify: (Errors|Warnings) found during check|-V may provide more details)")
_FENCING = re.compile(r"stonith|fencing|fence", re.I)
_ID_WORD = re.compile(r"[A-Za-z0-9_.:@-]+")


def _wrap(state: DesiredState) -> etree._Element:
    template = parse_xml_bytes(empty_cib().encode(), source="cibadmin --empty")
    cib = etree.Element("cib")
    for k, v in (state.cib_attributes or dict(attr_items(template))).items():
        cib.set(k, v)
    config = state.configuration()
    cib.append(config)
    status = etree.SubElement(cib, "status")
    for node in config.iterfind("nodes/node"):
        node_id = node.get("id")
        if node_id and node.get("type", "member") == "member":
            etree.SubElement(status, "node_state", id=node_id, uname=node.get("uname", node_id),
                             in_ccm="true", crmd="online", join="member", expected="member")
    return cib


def _element_id(el: etree._Element | None) -> str | None:
    while el is not None:
        if el.get("id"):
            return el.get("id")
        el = el.getparent()
    return None


def verify_cib(state: DesiredState) -> list[Finding]:
    cib = _wrap(state)
    known_ids = {el.get("id") for el in cib.iter() if isinstance(el.tag, str) and el.get("id")}
    with tempfile.TemporaryDirectory(prefix="ha-gitops-verify-") as tmp:
        path = Path(tmp) / "cib.xml"
        data = to_bytes(cib)
        path.write_bytes(data)
        by_line: dict[int, list[etree._Element]] = {}
        for el in parse_xml_bytes(data, source=str(path)).iter():
            line = source_line(el)
            if isinstance(el.tag, str) and line is not None:
                by_line.setdefault(line, []).append(el)
        # -VV: Pacemaker 2.1 logs warnings only from the second -V on (one -V shows errors only)
        result = run(["crm_verify", "-VV", "-x", str(path)], timeout=VERIFY_TIMEOUT, check=False,
                     env={"CIB_shadow": "", "PCMK_logfile": "/dev/null"})
    return parse_verify_output(result.returncode, result.stderr + "\n" + result.stdout,
                               source=str(state.cib_file), id_lines=state.id_lines, known_ids=known_ids,
                               by_line=by_line)


def parse_verify_output(returncode: int, output: str, *, source: str, id_lines: dict[str, int],
                        known_ids: set[str | None], by_line: dict[int, list[etree._Element]]
                        ) -> list[Finding]:
    """crm_verify's complaints as findings: its errors are errors, its warnings warnings (fencing
    complaints always warnings), each with its whole text. Exit code 78 with warnings only is a
    valid configuration ("Warnings found during check: config may not be valid")."""
    findings: list[Finding] = []
    schema_errors = 0
    downgraded = 0  # errors that are fencing policy, reported as warnings
    summary = ""
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _SCHEMA.match(line)
        if m and m.group("file").endswith("cib.xml"):
            candidates = by_line.get(int(m.group("line")), [])
            el = next((c for c in candidates if c.tag == m.group("tag")),
                      candidates[0] if candidates else None)
            ident = _element_id(el)
            msg = re.sub(r"^(Relax-NG )?validity error\s*:\s*", "", m.group("msg"))
            findings.append(Finding(severity="error", file=source, line=id_lines.get(ident or ""),
                                    element=ident, message=f"schema: <{m.group('tag')}>: {msg}"))
            schema_errors += 1
            continue
        m = _LOG.match(line)
        if not m:
            if _SUMMARY.match(line):
                summary += line
            else:
                # a line outside the log format (e.g. "Schema validation ... is disabled"): shown, not dropped
                findings.append(Finding(severity="warning", file=source, message=f"crm_verify: {line}"))
            continue
        msg = m.group("msg").strip()
        if "did not pass schema validation" in msg and schema_errors:
            continue
        ident = next((w for w in _ID_WORD.findall(msg) if w in known_ids), None)
        severity: Severity = "warning" if m.group("sev") == "warning" or _FENCING.search(msg) else "error"
        downgraded += severity == "warning" and m.group("sev") != "warning"
        finding = Finding(severity=severity, file=source, line=id_lines.get(ident or ""), element=ident,
                          message=f"crm_verify: {msg}")
        if finding not in findings:  # crm_verify unpacks the configuration more than once
            findings.append(finding)
    explained = (returncode == 0 or any(f.severity == "error" for f in findings)
                 or "Warnings found" in summary or downgraded)
    if not explained:
        # a failure crm_verify did not explain line by line: its whole output is the reason
        detail = output.strip() or "no output"
        findings.append(Finding(severity="error", file=source,
                                message=f"crm_verify exited {returncode}: {detail}"))
    return findings
