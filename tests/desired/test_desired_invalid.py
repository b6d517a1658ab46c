"""Bad desired states: each gives a clear finding (file + line or element) and exit code 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from controller.desired import Finding, validate_desired
from tests.desired.desiredtestlib import REPO

CLI = str(REPO / ".venv" / "bin" / "ha-gitops")


def _errors(folder: Path) -> list[Finding]:
    report = validate_desired(folder)
    assert not report.valid
    return report.errors


def _cli_exit(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "validate", str(folder)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _edit_cib(folder: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = folder / "cib.xml"
    root = etree.fromstring(path.read_bytes(), etree.XMLParser(remove_blank_text=True))
    change(root)
    path.write_bytes(etree.tostring(root, pretty_print=True))


def test_malformed_xml(xml_cluster: Path) -> None:
    (xml_cluster / "cib.xml").write_text("<cib>\n<configuration>\n<nodes>\n</configuration>\n</cib>\n")
    [err] = _errors(xml_cluster)
    assert err.file.endswith("cib.xml") and err.line == 4 and "malformed" in err.message
    res = _cli_exit(xml_cluster)
    assert res.returncode == 2 and "cib.xml:4" in res.stdout


@pytest.mark.timeout(30)
def test_xxe_is_refused(xml_cluster: Path) -> None:
    (xml_cluster / "cib.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE configuration [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        '<configuration><crm_config/><nodes/><resources><primitive id="a" class="ocf" provider="heartbeat"'
        ' type="Dummy"><instance_attributes id="ia"><nvpair id="n" name="x" value="&xxe;"/>'
        "</instance_attributes></primitive></resources><constraints/></configuration>\n")
    [err] = _errors(xml_cluster)
    assert err.file.endswith("cib.xml") and ("DTD" in err.message or "entity" in err.message)
    assert "root:" not in err.message
    assert _cli_exit(xml_cluster).returncode == 2


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_quickly(xml_cluster: Path) -> None:
    names = ["lol"] + [f"lol{i}" for i in range(1, 10)]
    ents = ['<!ENTITY lol "lol">'] + [f'<!ENTITY {names[i]} "{f"&{names[i - 1]};" * 10}">'
                                      for i in range(1, 10)]
    (xml_cluster / "cib.xml").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE configuration [{"".join(ents)}]>\n'
        "<configuration><crm_config/><nodes/><resources/><constraints/><x>&lol9;</x></configuration>\n")
    [err] = _errors(xml_cluster)
    assert err.file.endswith("cib.xml")
    assert _cli_exit(xml_cluster).returncode == 2


def test_unknown_crm_keyword_names_its_line(crm_cluster: Path) -> None:
    crm = crm_cluster / "cib.crm"
    lines = crm.read_text().split("\n")
    lines.insert(8, "frobnicate KAMAILIO01 now")  # becomes line 9, after a multi-line primitive
    crm.write_text("\n".join(lines))
    errs = _errors(crm_cluster)
    assert any(e.line == 9 and "frobnicate" in e.message and e.file.endswith("cib.crm") for e in errs), errs
    res = _cli_exit(crm_cluster)
    assert res.returncode == 2 and "cib.crm:9" in res.stdout


def test_crm_dangling_group_member_names_its_line(crm_cluster: Path) -> None:
    crm = crm_cluster / "cib.crm"
    crm.write_text(crm.read_text().replace("group PROXY01 IP-HA-01 KAMAILIO01",
                                           "group PROXY01 IP-HA-01 KAMAILIO01 NOSUCH"))
    errs = _errors(crm_cluster)
    assert any(e.line == 16 and e.element == "PROXY01" and "NOSUCH" in e.message for e in errs), errs


def test_corosync_unclosed_brace(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("ttl: 1\n}\n", "ttl: 1\n", 1))
    [err] = _errors(xml_cluster)
    assert err.file.endswith("corosync.conf") and err.line == 1 and "never closed" in err.message
    assert _cli_exit(xml_cluster).returncode == 2


def test_cib_node_missing_from_nodelist(xml_cluster: Path) -> None:
    def add_node(root: etree._Element) -> None:
        etree.SubElement(root.find("configuration/nodes"), "node", id="999", uname="kamailio09")

    _edit_cib(xml_cluster, add_node)
    [err] = _errors(xml_cluster)
    assert err.element == "999" and "kamailio09" in err.message and err.line is not None
    assert _cli_exit(xml_cluster).returncode == 2


def test_cib_nodes_match_by_name_when_ids_differ(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("ring0_addr: 10.220.1.21\n",
                                             "ring0_addr: 10.220.1.99\nname: kamailio01\n"))
    assert validate_desired(xml_cluster).valid


def test_expected_votes_mismatch(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("expected_votes: 3", "expected_votes: 5"))
    [err] = _errors(xml_cluster)
    line = conf.read_text().split("\n").index("expected_votes: 5") + 1
    assert err.file.endswith("corosync.conf") and err.line == line and "expected_votes is 5" in err.message


def test_two_quorum_providers(xml_cluster: Path) -> None:
    conf = xml_cluster / "corosync.conf"
    conf.write_text(conf.read_text().replace("expected_votes: 3\n", "expected_votes: 3\nprovider: other\n"))
    [err] = _errors(xml_cluster)
    assert err.line == conf.read_text().split("\n").index("provider: other") + 1
    assert "exactly one" in err.message


def test_dangling_constraint_reference(xml_cluster: Path) -> None:
    def add(root: etree._Element) -> None:
        cons = root.find("configuration/constraints")
        etree.SubElement(cons, "rsc_order", id="order-bad", first="PROXY01", then="NOSUCH")
        rset = etree.SubElement(etree.SubElement(cons, "rsc_colocation", id="col-set", score="INFINITY"),
                                "resource_set", id="col-set-0")
        etree.SubElement(rset, "resource_ref", id="PROXY01")
        etree.SubElement(rset, "resource_ref", id="GHOST")

    _edit_cib(xml_cluster, add)
    errs = _errors(xml_cluster)
    ours = {(e.element, e.line is not None) for e in errs if "not a resource" in e.message}
    assert ours == {("order-bad", True), ("col-set", True)}
    assert _cli_exit(xml_cluster).returncode == 2


def test_schema_error_maps_to_element_and_line(xml_cluster: Path) -> None:
    def bogus(root: etree._Element) -> None:
        root.find(".//primitive[@id='IP-HA-01']").set("bogus", "1")

    _edit_cib(xml_cluster, bogus)
    errs = _errors(xml_cluster)
    hit = [e for e in errs if e.element == "IP-HA-01" and "bogus" in e.message]
    assert hit and hit[0].line is not None
    src = (xml_cluster / "cib.xml").read_text().split("\n")
    assert 'id="IP-HA-01"' in src[hit[0].line - 1]


def test_missing_stonith_is_a_warning(xml_cluster: Path) -> None:
    def no_fencing(root: etree._Element) -> None:
        clone = root.find(".//clone[@id='fencing']")
        clone.getparent().remove(clone)

    _edit_cib(xml_cluster, no_fencing)
    report = validate_desired(xml_cluster)
    assert report.valid
    assert any("STONITH" in f.message and f.severity == "warning" for f in report.findings)


def test_cluster_toml_unknown_key(xml_cluster: Path) -> None:
    (xml_cluster / "cluster.toml").write_text('[[ignore]]\nxpath = "//x"\nreason = "r"\nwhy = "typo"\n')
    [err] = _errors(xml_cluster)
    assert err.file.endswith("cluster.toml") and err.line == 4 and "why" in err.message


def test_both_cib_files_is_an_error(xml_cluster: Path) -> None:
    (xml_cluster / "cib.crm").write_text("primitive a Dummy\n")
    [err] = _errors(xml_cluster)
    assert "exactly one" in err.message
