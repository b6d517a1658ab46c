"""`ha-gitops export` on real CIBs written by others: what it writes loads back, the way `plan` loads a
desired folder, to exactly the configuration it came from (the semantic diff finds nothing), in crm
syntax (crmsh's own `configure show`, run here for real) and as XML. No cluster: each corpus CIB plays the
live one. Also: what export leaves out, the secret hints, and the cluster.toml skeleton.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from controller.audit.masking import is_secret_name
from controller.cib.document import as_cib
from controller.cib.export import cluster_toml_skeleton, configuration_only, secret_hints, strip_managed
from controller.cib.marker import MARKER_SET_ID, Marker, with_marker
from controller.cib.normalize import MANAGED_CIB_ATTRIBUTES
from controller.cib.xml import parse_xml_bytes, to_bytes
from controller.cli.adoption import residual_changes
from controller.desired.crm import configuration_to_crm
from controller.desired.load import load_desired
from controller.desired.policy import parse_policy
from controller.plan import cib_plan
from tests.desired.desiredtestlib import CORPUS, KAMAILIO

SCHEDULER = CORPUS / "cib" / "pacemaker-scheduler"
# Real configurations with groups, clones, promotable clones, templates, resource sets, tickets, rules,
# fencing devices with passwords, and node attributes; every one with a <status> section.
CIBS = [CORPUS / "cib" / "crmsh-cibtests" / "001.exp.xml", CORPUS / "cib" / "crmsh-cibtests" / "003.exp.xml",
        SCHEDULER / "bug-5186-partial-migrate.xml", SCHEDULER / "clone-recover-no-shuffle-7.xml",
        SCHEDULER / "coloc-intra-set.xml", SCHEDULER / "template-order-2.xml",
        SCHEDULER / "ticket-promoted-10.xml", SCHEDULER / "resource-discovery.xml"]


def _live(path: Path) -> etree._Element:
    """The corpus CIB as a cluster ha-gitops manages holds it: with a marker and a rollout attribute."""
    live = with_marker(parse_xml_bytes(path.read_bytes(), source=str(path)),
                       Marker(revision="a" * 40, event="e1", kind="apply", applied_by="n1"))
    node = live.find("configuration/nodes/node")
    if node is not None:
        attrs = etree.SubElement(node, "instance_attributes", id=f"{node.get('id')}-hg")
        etree.SubElement(attrs, "nvpair", id=f"{node.get('id')}-hg-rev", name="ha-gitops-corosync-revision",
                         value="b" * 40)
    return live


def _export(live: etree._Element, folder: Path, fmt: str) -> None:
    stripped = strip_managed(live)
    (folder / "corosync.conf").write_text((KAMAILIO / "corosync.conf").read_text())
    (folder / "cluster.toml").write_text(cluster_toml_skeleton(stripped))
    if fmt == "crm":
        (folder / "cib.crm").write_text(configuration_to_crm(stripped))
    else:
        (folder / "cib.xml").write_bytes(to_bytes(configuration_only(stripped)))


@pytest.mark.parametrize("fmt", ["crm", "xml"])
@pytest.mark.parametrize("path", CIBS, ids=lambda p: p.name)
def test_export_then_plan_finds_no_difference(path: Path, fmt: str, tmp_path: Path) -> None:
    live = _live(path)
    _export(live, tmp_path, fmt)
    text = (tmp_path / f"cib.{fmt}").read_text()
    assert "ha-gitops" not in text and "dc-version" not in text  # the marker, managed fields left out
    changes = cib_plan(load_desired(tmp_path), live).changes
    assert changes == [], [c.model_dump() for c in changes]
    assert residual_changes(tmp_path, live) == []  # what export itself checks and says


def test_export_names_what_crmsh_does_not_read_back(tmp_path: Path) -> None:
    """crmsh prints a one-expression rule's boolean-op="or" as nothing: read back, the rule lost it, and
    the diff sees it. Export names those objects (it exits 1); the XML export keeps them."""
    live = _live(SCHEDULER / "clone-anon-failcount.xml")
    _export(live, tmp_path, "crm")
    lost = {(c.kind, c.id) for c in residual_changes(tmp_path, live)}
    assert ("constraint", "pingd-group01") in lost
    (tmp_path / "cib.crm").unlink()
    _export(live, tmp_path, "xml")
    assert residual_changes(tmp_path, live) == []


def test_export_leaves_out_what_the_cluster_writes() -> None:
    live = _live(SCHEDULER / "bug-5186-partial-migrate.xml")
    live.set("dc-uuid", "1")
    stripped = strip_managed(live)
    assert stripped.find("status") is None and live.find("status") is not None  # live untouched
    assert not [a for a in MANAGED_CIB_ATTRIBUTES if stripped.get(a) is not None]
    names = {nv.get("name") for nv in stripped.iter("nvpair")}
    assert not {"dc-version", "cluster-infrastructure", "have-watchdog", "last-lrm-refresh"} & names
    assert not [n for n in names if n and n.startswith("ha-gitops-")]
    assert stripped.find(f".//cluster_property_set[@id='{MARKER_SET_ID}']") is None
    # What the user wrote stays, validate-with included (the schema the configuration is written for).
    assert stripped.get("validate-with") == live.get("validate-with")
    assert len(list(stripped.iter("primitive"))) == len(list(live.iter("primitive")))


def test_clear_text_secrets_are_pointed_out() -> None:
    stripped = strip_managed(parse_xml_bytes((SCHEDULER / "params-6.xml").read_bytes()))
    hints = secret_hints(stripped, is_secret_name)
    assert ("stonith-v02-a", "passwd") in {(h.element, h.name) for h in hints}
    assert {h.name for h in hints} == {"passwd", "password"}  # ipaddr, login, pcmk_host_list: not secrets
    assert hints[0].text().endswith("parameter passwd looks like a secret kept in clear text")
    # The reference cluster keeps none.
    assert secret_hints(as_cib(load_desired(KAMAILIO).configuration()), is_secret_name) == []


def test_crm_show_keeps_password_values() -> None:
    """crmsh prints passw* values as **** by default; an export that did would lose them."""
    stripped = strip_managed(parse_xml_bytes((SCHEDULER / "params-6.xml").read_bytes()))
    text = configuration_to_crm(stripped)
    value = stripped.find(".//nvpair[@id='stonith-v02-a-instance_attributes-passwd']").get("value")
    assert f'passwd="{value}"' in text or f"passwd={value}" in text


def test_cluster_toml_skeleton_parses_commented_and_uncommented() -> None:
    stripped = strip_managed(parse_xml_bytes((SCHEDULER / "coloc-intra-set.xml").read_bytes()))
    text = cluster_toml_skeleton(stripped)
    assert parse_policy(text) == parse_policy("")  # as written: no policy at all
    uncommented = "\n".join(re.sub(r"^# ", "", line) for line in text.splitlines()
                            if line.startswith("# ") and re.match(r"^# (\[|[a-z_]+ = )", line))
    policy = parse_policy(uncommented)  # every key it shows is a real key with a valid value
    top = [r.get("id") for r in stripped.find("configuration/resources")]
    assert policy.disruption.protect == top and policy.maintenance_window[0].name == "nightly"
