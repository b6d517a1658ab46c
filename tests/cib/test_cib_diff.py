"""The patchset diff on hand-made cases: crm_diff's exact format, minimal moves, fallbacks."""

from __future__ import annotations

import copy
from pathlib import Path

from lxml import etree

from controller.cib.diff import diff_cib
from controller.cib.patchset import _lis_members
from controller.command import run
from tests.cib.cibtestlib import SCHEDULER, bump_target, cibadmin_patch, config_text, current, write


def _strip_version(patch: str) -> str:
    return patch.split("</version>", 1)[1]


def test_same_text_as_crm_diff(tmp_path: Path) -> None:
    """Byte for byte crm_diff's output after <version> (crm_diff adds needless moves elsewhere)."""
    for a_name, b_name in (("order1", "order2"), ("attrs1", "attrs2"), ("bug-1572-1", "bug-1572-2"),
                           ("bug-5025-2", "bug-5025-3")):
        a, b = current(SCHEDULER / f"{a_name}.xml"), current(SCHEDULER / f"{b_name}.xml")
        theirs = run(["crm_diff", "-o", str(write(a, tmp_path / "a.xml")), "-n",
                      str(write(b, tmp_path / "b.xml"))], timeout=60, check=False).stdout
        ours = diff_cib(a, b).patch_xml()
        assert ours
        assert _strip_version(ours) == _strip_version(theirs)


def test_lis() -> None:
    assert len(_lis_members([0, 1, 2, 3])) == 4
    assert len(_lis_members([3, 2, 1, 0])) == 1
    keep = _lis_members([1, 2, 3, 0])  # one element moved to the front: one move, not four
    assert keep == {0, 1, 2}


def _group_cib(members: list[str], comments: bool = False) -> etree._Element:
    base = current(SCHEDULER / "order1.xml")
    res = base.find("configuration/resources")
    group = etree.SubElement(res, "group", id="g")
    for m in members:
        if comments:
            group.append(etree.Comment(f" before {m} "))
        etree.SubElement(group, "primitive",
                         {"id": m, "type": "Dummy", "provider": "heartbeat", "class": "ocf"})
    return base


def test_reversed_group_applies_with_few_moves(tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(8)]
    old = _group_cib(names)
    new = _group_cib([*names[1:], names[0]])
    patch = diff_cib(old, new).patch_xml()
    assert patch.count('operation="move"') == 1
    for target in (new, _group_cib(list(reversed(names)))):
        rc, err, got = cibadmin_patch(old, diff_cib(old, target).patch_xml(), tmp_path)
        assert rc == 0, err
        assert config_text(got) == config_text(target)


def test_comments_that_move_replace_their_parent(tmp_path: Path) -> None:
    """A comment cannot be addressed by a move: the group is deleted and created again."""
    old = _group_cib(["a", "b", "c"], comments=True)
    new = copy.deepcopy(old)
    group = new.find(".//group")
    kids = list(group)
    group[:] = kids[4:] + kids[:4]
    patch = diff_cib(old, new).patch_xml()
    assert "operation=\"delete\" path=\"/cib/configuration/resources/group[@id=&apos;g&apos;]\"" in patch
    rc, err, got = cibadmin_patch(old, patch, tmp_path)
    assert rc == 0, err
    assert config_text(got) == config_text(new)


def test_comment_deleted_and_added(tmp_path: Path) -> None:
    old = _group_cib(["a", "b"], comments=True)
    new = copy.deepcopy(old)
    group = new.find(".//group")
    group.remove(group[0])
    group.insert(2, etree.Comment(" new "))
    rc, err, got = cibadmin_patch(old, diff_cib(old, new).patch_xml(), tmp_path)
    assert rc == 0, err
    assert config_text(got) == config_text(new)


def test_crm_diff_patch_needs_a_bumped_target(tmp_path: Path) -> None:
    """Why we raise the target version: cibadmin refuses crm_diff's equal versions (rc 103)."""
    a, b = current(SCHEDULER / "order1.xml"), current(SCHEDULER / "order2.xml")
    theirs = run(["crm_diff", "-o", str(write(a, tmp_path / "a.xml")), "-n",
                  str(write(b, tmp_path / "b.xml"))], timeout=60, check=False).stdout
    assert cibadmin_patch(a, theirs, tmp_path)[0] != 0
    assert cibadmin_patch(a, bump_target(theirs), tmp_path)[0] == 0


def test_an_ignored_set_lends_no_id_to_the_desired_set_of_its_rank() -> None:
    """Property sets are matched by rank: a live set an ignore rule keeps (the sandbox's own options,
    the marker's) must not be taken for the desired set at the same rank."""
    from controller.cib.diff import build_live_patch
    from controller.cib.marker import SANDBOX_SET_ID, WRITE_RULES, Marker, with_marker

    live = etree.fromstring(
        f'<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config>'
        f'<cluster_property_set id="{SANDBOX_SET_ID}"><nvpair id="s-dc" name="dc-deadtime" value="2s"/>'
        '</cluster_property_set><cluster_property_set id="cib-bootstrap-options"><nvpair id="o-cn" '
        'name="cluster-name" value="k"/></cluster_property_set></crm_config><nodes/><resources/>'
        "<constraints/></configuration><status/></cib>")
    desired = etree.fromstring(
        '<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config>'
        '<cluster_property_set id="opts"><nvpair id="o-st" name="stonith-enabled" value="true"/>'
        "</cluster_property_set></crm_config><nodes/><resources/><constraints/></configuration></cib>")
    d = build_live_patch(live, with_marker(desired, Marker(revision="abc")), ignore=list(WRITE_RULES))
    xml = d.patch.to_xml()
    assert "cluster_property_set[@id=&apos;cib-bootstrap-options&apos;]" in xml and "stonith-enabled" in xml
    assert SANDBOX_SET_ID not in xml  # neither renamed, filled nor deleted
    new = d.new.find("configuration/crm_config")
    assert [s.get("id") for s in new] == [SANDBOX_SET_ID, "cib-bootstrap-options", "ha-gitops"]


def test_a_stored_configuration_holding_the_ignored_set_writes_a_valid_patch() -> None:
    """A rollback writes a configuration recorded earlier, which holds the kept set too: neither copy of it
    may lend its id to another set (a duplicate id: the patch breaks the schema)."""
    from controller.cib.diff import build_live_patch
    from controller.cib.marker import SANDBOX_SET_ID, WRITE_RULES, Marker, with_marker

    sets = (f'<cluster_property_set id="{SANDBOX_SET_ID}"><nvpair id="s-dc" name="dc-deadtime" value="2s"/>'
            '</cluster_property_set><cluster_property_set id="cib-bootstrap-options"><nvpair id="o-cn" '
            'name="cluster-name" value="k"/>{extra}</cluster_property_set>')
    cib = ('<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config>{sets}</crm_config>'
           "<nodes/><resources/><constraints/></configuration><status/></cib>")
    marked = Marker(revision="old")
    live = with_marker(etree.fromstring(cib.format(sets=sets.format(extra=""))), marked)
    before = with_marker(etree.fromstring(cib.format(sets=sets.format(
        extra='<nvpair id="o-st" name="stonith-enabled" value="false"/>'))), marked)
    d = build_live_patch(live, with_marker(before, Marker(revision="abc")), ignore=list(WRITE_RULES))
    new = d.new.find("configuration/crm_config")
    assert [s.get("id") for s in new] == [SANDBOX_SET_ID, "cib-bootstrap-options", "ha-gitops"]
    xml = d.patch.to_xml()
    assert "stonith-enabled" in xml and SANDBOX_SET_ID not in xml
