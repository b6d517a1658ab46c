"""Strict validation where it hurts, end to end on real tools (crmsh, crm_verify, crm_resource,
corosync -t): a missing agent is an error naming it and its line; crm_verify's warnings (a real pcs
CIB's deprecations) leave a folder valid and are shown in full; corosync.conf typos are warnings,
nodelist mistakes and what `corosync -t` rejects are errors with their line."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from lxml import etree

from controller.cluster.agents import PacemakerAgents
from controller.cluster.corosync_test import CorosyncTest
from controller.desired import Finding, validate_desired
from controller.desired.substitute import SANDBOX_SUBSTITUTIONS, Substitution
from controller.desired.verify import parse_verify_output
from tests.desired.desiredtestlib import CORPUS, KAMAILIO, REPO

CLI = str(REPO / ".venv" / "bin" / "ha-gitops")
SCHEDULER = CORPUS / "cib" / "pacemaker-scheduler"
# a pcs-made cluster (RDO/OpenStack: pcs's "<rsc>-monitor-interval-60s" ids, cluster-name set) whose only
# crm_verify complaint on Pacemaker 2.1.5 is a deprecation warning
PCS_CIB = SCHEDULER / "one-or-more-unrunnable-instances.xml"
REQUIRE_ALL = ("Support for require-all in ordering constraints is deprecated and will be removed in a "
               "future release (use clone-min clone meta-attribute instead)")

pytestmark = pytest.mark.skipif(shutil.which("crm_resource") is None or shutil.which("corosync") is None,
                                reason="needs Pacemaker and corosync installed")


def line_of(path: Path, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(path.read_text().split("\n")) if needle in line)


def strict(folder: Path, substitutions: Sequence[Substitution] = ()) -> list[Finding]:
    """validate with every check on: this machine's agents and corosync -t."""
    return validate_desired(folder, agents=PacemakerAgents(), corosync_check=CorosyncTest(),
                            substitutions=substitutions).findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def cli(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "validate", str(folder), *options], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def folder_for_cib(tmp_path: Path, cib: Path) -> Path:
    """A desired-state folder around a corpus CIB, with a knet corosync.conf listing its member nodes."""
    folder = tmp_path / cib.stem
    folder.mkdir()
    shutil.copy(cib, folder / "cib.xml")
    nodes = [n for n in etree.parse(str(cib)).iterfind("configuration/nodes/node")
             if n.get("type", "member") == "member"]
    body = ""
    for i, n in enumerate(nodes):
        nodeid = n.get("id") if (n.get("id") or "").isdigit() else i + 1
        body += f"    node {{\n        ring0_addr: 192.0.2.{i + 1}\n        nodeid: {nodeid}\n" \
                f"        name: {n.get('uname')}\n    }}\n"
    (folder / "corosync.conf").write_text(
        "totem {\n    version: 2\n    cluster_name: c\n    transport: knet\n}\n"
        f"quorum {{\n    provider: corosync_votequorum\n}}\nnodelist {{\n{body}}}\n")
    return folder


# ---- agents


def test_reference_cluster_is_valid_with_every_check_on_this_machine() -> None:
    findings = strict(KAMAILIO)
    assert errors(findings) == []
    [kam] = [f for f in findings if f.element == "KAMAILIO01"]  # crmsh's duplicate opinion is gone
    assert kam.severity == "warning" and kam.line == line_of(KAMAILIO / "cib.crm", "primitive KAMAILIO01")
    assert "systemd:kamailio could not be checked here" in kam.message
    assert cli(KAMAILIO).returncode == 0


def test_sandbox_substitution_checks_the_agent_that_really_runs() -> None:
    findings = strict(KAMAILIO, substitutions=SANDBOX_SUBSTITUTIONS)
    assert errors(findings) == [] and not [f for f in findings if f.element == "KAMAILIO01"]


def test_resource_agent_typo_is_an_error_naming_resource_agent_and_line(crm_cluster: Path) -> None:
    crm = crm_cluster / "cib.crm"
    crm.write_text(crm.read_text().replace("primitive IP-HA-01 IPaddr2",
                                           "primitive IP-HA-01 ocf:heartbeat:NoSuchAgent"))
    [err] = errors(strict(crm_cluster))
    assert err.file == str(crm) and err.line == line_of(crm, "primitive IP-HA-01")
    assert err.element == "IP-HA-01"
    assert "'IP-HA-01'" in err.message and "ocf:heartbeat:NoSuchAgent does not exist" in err.message


def test_fence_agent_typo_is_an_error_naming_it(crm_cluster: Path) -> None:
    crm = crm_cluster / "cib.crm"
    crm.write_text(crm.read_text().replace("stonith:external/ssh", "stonith:fence_nope"))
    [err] = errors(strict(crm_cluster))
    assert err.line == line_of(crm, "primitive stonithssh") and "'stonithssh'" in err.message
    assert "fence agent stonith:fence_nope" in err.message


def test_agent_typo_in_a_pcs_cib_xml_names_its_line(tmp_path: Path) -> None:
    folder = folder_for_cib(tmp_path, PCS_CIB)
    cib = folder / "cib.xml"
    cib.write_text(cib.read_text().replace('id="vip-db" provider="heartbeat" type="IPaddr2"',
                                           'id="vip-db" provider="heartbeat" type="IPaddr3"'))
    report = validate_desired(folder, agents=PacemakerAgents())
    [err] = [f for f in report.errors if f.element == "vip-db"]
    assert err.line == line_of(cib, 'id="vip-db"') and "ocf:heartbeat:IPaddr3" in err.message


# ---- crm_verify


def test_pcs_cib_with_only_deprecation_warnings_is_valid_and_says_why(tmp_path: Path) -> None:
    folder = folder_for_cib(tmp_path, PCS_CIB)
    report = validate_desired(folder)
    assert report.valid, report.errors
    [dep] = [f for f in report.findings if "require-all" in f.message]
    assert dep.severity == "warning" and dep.message == f"crm_verify: {REQUIRE_ALL}"
    # The corpus cluster's agents are not installed here: checked on its own nodes, not on this machine.
    res = cli(folder, "--no-agents")
    assert res.returncode == 0 and REQUIRE_ALL in re.sub(r"\s+", " ", res.stdout)  # the console may wrap
    missing = cli(folder)  # by default validate asks this machine's Pacemaker, which lacks them
    assert missing.returncode == 2 and "does not exist" in missing.stdout


def test_fencing_complaints_stay_warnings_and_deprecations_are_shown(tmp_path: Path) -> None:
    # no STONITH resource: crm_verify says "error", for validation it is a policy warning
    report = validate_desired(folder_for_cib(tmp_path, SCHEDULER / "bug-1822.xml"))
    assert report.valid, report.errors
    messages = [f.message for f in report.findings]
    assert any("no STONITH resources have been defined" in m for m in messages)
    assert any("'ordered' group meta-attribute is deprecated" in m for m in messages)


def test_crm_verify_errors_stay_errors_with_element_and_line(tmp_path: Path) -> None:
    folder = folder_for_cib(tmp_path, SCHEDULER / "order-wrong-kind.xml")
    [err] = validate_desired(folder).errors  # crm_verify says it several times: reported once
    assert err.element == "order1" and err.line == line_of(folder / "cib.xml", 'id="order1"')
    assert err.message == ("crm_verify: Resetting 'kind' for constraint order1 to 'Mandatory' because 'foo' "
                           "is not valid")


def test_no_crm_verify_message_is_cut() -> None:
    long = "x" * 3000
    [f] = parse_verify_output(78, f"(unpack_resources) \terror: {long}\n", source="cib.xml", id_lines={},
                              known_ids=set(), by_line={})
    assert f.message == f"crm_verify: {long}"
    # a failure without a message crm_verify formats as error or warning: an error with the whole output
    found = parse_verify_output(1, "y" * 3000, source="cib.xml", id_lines={}, known_ids=set(), by_line={})
    [err] = [f for f in found if f.severity == "error"]
    assert err.message == f"crm_verify exited 1: {'y' * 3000}"
    # exit 78 with warnings only ("Warnings found during check") is valid
    found = parse_verify_output(78, "(unpack_config) \twarning: deprecated thing\n"
                                "crm_verify: Warnings found during check: config may not be valid\n",
                                source="cib.xml", id_lines={}, known_ids=set(), by_line={})
    assert [(f.severity, f.message) for f in found] == [("warning", "crm_verify: deprecated thing")]


# ---- corosync.conf


def test_corosync_key_typo_is_a_warning_with_line_and_the_folder_stays_valid(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("token: 3000", "tokn: 3000"))
    report = validate_desired(xml_cluster)
    assert report.valid
    [w] = [f for f in report.findings if f.element == "totem.tokn"]
    assert w.severity == "warning" and w.line == line_of(conf, "tokn") and "did you mean 'token'" in w.message
    res = cli(xml_cluster)
    assert res.returncode == 0 and f"corosync.conf:{w.line}" in res.stdout


def test_node_without_address_is_invalid(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("ring0_addr: 10.220.1.23\n", "name: kamailio03\n"))
    errs = validate_desired(xml_cluster).errors
    [err] = [e for e in errs if "has no address" in e.message]
    assert err.file == str(conf) and err.line == line_of(conf, "name: kamailio03") - 1
    assert cli(xml_cluster).returncode == 2


def test_what_corosync_t_rejects_is_an_error_at_its_line(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("transport: udpu", "transport: udpu\ncrypto_cipher: aes999"))
    [err] = errors(strict(xml_cluster))
    assert err.file == str(conf) and err.line == line_of(conf, "aes999")
    assert err.message.startswith("corosync -t: ") and "Invalid cipher type" in err.message
