"""Loading desired/kamailio: same configuration as crmsh, cache, digest, CLI validate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from controller.desired import load_desired, validate_desired
from controller.desired.crm import cache_dir, crm_statements, crm_to_configuration, crmsh_version
from tests.desired.desiredtestlib import KAMAILIO, REPO, crmsh_directly

CLI = str(REPO / ".venv" / "bin" / "ha-gitops")


def _c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n")


def test_kamailio_loads_to_what_crmsh_produces(kamailio_cib_xml: bytes) -> None:
    state = load_desired(KAMAILIO)
    parser = etree.XMLParser(remove_blank_text=True)  # indentation is not content
    expected = etree.fromstring(kamailio_cib_xml, parser).find("configuration")
    assert _c14n(state.configuration()) == _c14n(expected)
    assert state.cib_format == "crm"
    assert {n.get("uname") for n in state.configuration().iterfind("nodes/node")} == {
        "kamailio01", "kamailio02", "kamailio03"}
    assert state.corosync.quorum.expected_votes == 3
    assert state.id_lines["PROXY01"] == 16
    assert len(state.digest) == 64


def test_digest_follows_content(crm_cluster: Path) -> None:
    first = load_desired(crm_cluster).digest
    assert load_desired(crm_cluster).digest == first
    conf = crm_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("token: 3000", "token: 4000"))
    assert load_desired(crm_cluster).digest != first


def test_crm_cache_avoids_second_crmsh_call(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HA_GITOPS_CRM_CACHE", str(tmp_path / "cache"))
    text = (KAMAILIO / "cib.crm").read_text() + "\n# cache test\n"
    first = crm_to_configuration(text)
    assert not first.cached
    entries = list((cache_dir() / "crm").glob("*.json"))
    assert len(entries) == 1
    second = crm_to_configuration(text)
    assert second.cached and second.configuration == first.configuration
    # proof that the cache, not crmsh, answered: a poisoned entry is returned as is
    data = json.loads(entries[0].read_text())
    data["configuration"] = data["configuration"].replace("kamailio01", "poisoned01")
    entries[0].write_text(json.dumps(data))
    assert b"poisoned01" in crm_to_configuration(text).configuration


def test_statement_numbers_match_crmsh() -> None:
    text = "# c1\n\nnode n1\n# c2\nprimitive foo Dummy \\\n\tparams a=1\nfrobnicate\n"
    st = crm_statements(text)
    assert [(s.number, s.first_line) for s in st] == [(1, 1), (2, 3), (3, 4), (4, 5), (5, 7)]
    rc, _ = crmsh_directly(text)
    assert rc != 0


def test_validate_kamailio_passes() -> None:
    report = validate_desired(KAMAILIO)
    assert report.valid, report.findings
    env = {**os.environ}
    res = subprocess.run([CLI, "validate", "--format", "json"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    findings = json.loads(res.stdout)
    assert all(f["severity"] == "warning" for f in findings)
    res = subprocess.run([CLI, "validate", str(KAMAILIO)], capture_output=True, text=True, timeout=120,
                         env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and "valid" in res.stdout


def test_whole_cib_xml_validates(xml_cluster: Path) -> None:
    report = validate_desired(xml_cluster)
    assert report.valid, report.findings
    state = load_desired(xml_cluster)
    assert state.cib_format == "xml"
    assert state.cib_attributes["validate-with"].startswith("pacemaker-")


def test_configuration_only_xml_validates(xml_cluster: Path) -> None:
    cib = etree.fromstring((xml_cluster / "cib.xml").read_bytes())
    (xml_cluster / "cib.xml").write_bytes(etree.tostring(cib.find("configuration")))
    assert validate_desired(xml_cluster).valid


def test_cluster_toml_ignore_rules(crm_cluster: Path) -> None:
    (crm_cluster / "cluster.toml").write_text(
        '[[ignore]]\nxpath = "//nvpair[@name=\'dc-version\']"\nreason = "written by pacemaker"\n')
    state = load_desired(crm_cluster)
    assert state.policy.ignore[0].reason == "written by pacemaker"
    assert state.policy_file == crm_cluster / "cluster.toml"


def test_crmsh_version_is_asked_once_per_crmsh_install(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache hit must not start crmsh to learn its version (0.6 s in every CLI run and agent start):
    the answer is kept beside the conversions, keyed by the crm program file."""
    monkeypatch.setenv("HA_GITOPS_CRM_CACHE", str(tmp_path / "cache"))
    crmsh_version.cache_clear()
    try:
        asked = crmsh_version()
        assert asked == subprocess.run(["crm", "--version"], capture_output=True, text=True, timeout=60,
                                       env={**os.environ, "HOME": str(tmp_path)}).stdout.strip()
        [memo] = (tmp_path / "cache" / "crm").glob("version-*.txt")
        memo.write_text("crm 0.0-from-the-memo")  # the next process reads it instead of asking crmsh
        crmsh_version.cache_clear()
        assert crmsh_version() == "crm 0.0-from-the-memo"
    finally:
        crmsh_version.cache_clear()
