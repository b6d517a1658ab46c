"""Semantic mode: ids, attribute order, whitespace, comments and cluster-managed fields are no
difference; real changes are; ignore rules hold; the live patch applies with the real cibadmin."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree
from pydantic import ValidationError

from controller.cib.diff import build_live_patch, diff_cib
from controller.cib.document import CibVersion, load_cib_bytes
from controller.cib.durations import duration_ms
from controller.cib.normalize import IgnoreRule
from controller.errors import InputError
from tests.cib.cibtestlib import SCHEDULER, cibadmin_patch, config_text, current, feature_set

# Written the way pcs names things (live) and the way crmsh does (desired).
LIVE = """<cib crm_feature_set="{fs}" validate-with="pacemaker-3.9" epoch="42" num_updates="7"
     admin_epoch="0" cib-last-written="Mon Jan  1 00:00:00 2024" update-origin="n1"
     update-client="cibadmin" update-user="root" have-quorum="1" dc-uuid="1">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-have-watchdog" name="have-watchdog" value="false"/>
        <nvpair id="cib-bootstrap-options-dc-version" name="dc-version" value="2.1.5-a3f44794f94"/>
        <nvpair id="cib-bootstrap-options-cluster-infrastructure" name="cluster-infrastructure"
                value="corosync"/>
        <nvpair id="cib-bootstrap-options-cluster-name" name="cluster-name" value="ha"/>
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="cib-bootstrap-options-last-lrm-refresh" name="last-lrm-refresh" value="1700000000"/>
      </cluster_property_set>
    </crm_config>
    <nodes>
      <node id="1" uname="n1"/>
      <node id="2" uname="n2"/>
    </nodes>
    <resources>
      <group id="G">
        <primitive id="IP-HA-01" class="ocf" provider="heartbeat" type="IPaddr2">
          <instance_attributes id="IP-HA-01-instance_attributes">
            <nvpair id="IP-HA-01-instance_attributes-ip" name="ip" value="10.0.0.10"/>
            <nvpair id="IP-HA-01-instance_attributes-cidr_netmask" name="cidr_netmask" value="24"/>
          </instance_attributes>
          <meta_attributes id="IP-HA-01-meta_attributes">
            <nvpair id="IP-HA-01-meta_attributes-target-role" name="target-role" value="Started"/>
          </meta_attributes>
          <operations>
            <op id="IP-HA-01-monitor-interval-20" name="monitor" interval="20" timeout="20s"/>
            <op id="IP-HA-01-start-interval-0s" name="start" interval="0s" timeout="20s"/>
          </operations>
        </primitive>
        <primitive id="web" class="ocf" provider="heartbeat" type="Dummy">
          <operations>
            <op id="web-monitor-interval-10s" name="monitor" interval="10s"/>
          </operations>
        </primitive>
      </group>
    </resources>
    <constraints>
      <rsc_location id="loc-G" rsc="G" node="n1" score="100"/>
    </constraints>
    <rsc_defaults>
      <meta_attributes id="rsc_defaults-meta_attributes">
        <nvpair id="rsc_defaults-meta_attributes-resource-stickiness" name="resource-stickiness"
                value="100"/>
      </meta_attributes>
    </rsc_defaults>
  </configuration>
  <status>
    <node_state id="1" uname="n1" in_ccm="true" crmd="online" join="member" expected="member"/>
  </status>
</cib>
"""

DESIRED = """<?xml version="1.0"?>
<!-- desired state, written by hand with crmsh-style ids -->
<configuration>
  <crm_config>
    <cluster_property_set id="cib-bootstrap-options">
      <nvpair name="stonith-enabled" value="false" id="cib-bootstrap-options-stonith-enabled"/>
    </cluster_property_set>
  </crm_config>
  <nodes><node uname="n1" id="1"/><node id="2" uname="n2"/></nodes>
  <resources>
    <group id="G">
      <primitive id="IP-HA-01" class="ocf" provider="heartbeat" type="IPaddr2">
        <operations>
          <op name="start" timeout="20s" interval="0" id="IP-HA-01-start-0"/>
          <op name="monitor" interval="20s" timeout="20" id="IP-HA-01-monitor-20"/>
        </operations>
        <meta_attributes id="IP-HA-01-meta">
          <nvpair name="target-role" value="Started" id="IP-HA-01-meta-target-role"/>
        </meta_attributes>
        <instance_attributes id="IP-HA-01-params">
          <nvpair name="cidr_netmask" value="24" id="IP-HA-01-params-cidr_netmask"/>
          <!-- the service address -->
          <nvpair name="ip" value="10.0.0.10" id="IP-HA-01-params-ip"/>
        </instance_attributes>
      </primitive>
      <primitive id="web" class="ocf" provider="heartbeat" type="Dummy">
        <operations><op id="web-monitor-10s" name="monitor" interval="10000ms"/></operations>
      </primitive>
    </group>
  </resources>
  <constraints><rsc_location score="100" node="n1" rsc="G" id="loc-G"/></constraints>
  <rsc_defaults>
    <meta_attributes id="rsc-options">
      <nvpair id="rsc-options-resource-stickiness" name="resource-stickiness" value="100"/>
    </meta_attributes>
  </rsc_defaults>
</configuration>
"""


def live() -> etree._Element:
    return load_cib_bytes(LIVE.format(fs=feature_set()).encode(), source="live")


def desired(text: str = DESIRED) -> etree._Element:
    return load_cib_bytes(text.encode(), source="desired")


def test_only_ids_order_whitespace_comments_and_managed_fields_differ() -> None:
    exact = diff_cib(live(), desired())
    assert exact.changed  # ids differ: crm_diff would see many changes
    semantic = diff_cib(live(), desired(), semantic=True)
    assert not semantic.changed, semantic.patch_xml()
    assert semantic.objects() == []


def test_attribute_order_alone_is_no_difference_even_in_exact_mode() -> None:
    a = live()
    b = copy.deepcopy(a)
    for elem in b.iter():
        if isinstance(elem.tag, str):
            items = list(elem.attrib.items())
            elem.attrib.clear()
            for k, v in reversed(items):
                elem.set(k, v)
    assert not diff_cib(a, b).changed


def test_cluster_managed_fields_are_no_difference() -> None:
    a, b = live(), live()
    b.set("epoch", "99")
    b.set("cib-last-written", "Tue Feb  2 00:00:00 2027")
    b.set("dc-uuid", "2")
    b.remove(b.find("status"))
    for nv in b.iter("nvpair"):
        if nv.get("name") in ("dc-version", "last-lrm-refresh"):
            nv.getparent().remove(nv)
    assert diff_cib(a, b).changed
    assert not diff_cib(a, b, semantic=True).changed


def _set(cib: etree._Element, name: str, value: str) -> None:
    for nv in cib.iter("nvpair"):
        if nv.get("name") == name:
            nv.set("value", value)
            return
    raise AssertionError(name)


def test_real_change_is_detected_rendered_and_the_live_patch_applies(tmp_path: Path) -> None:
    want = desired()
    _set(want, "target-role", "Stopped")
    want.find("configuration/constraints/rsc_location").set("score", "200")
    result = diff_cib(live(), want, semantic=True)
    assert result.changed
    by_id = {(c.kind, c.id): c for c in result.objects()}
    assert set(by_id) == {("resource", "IP-HA-01"), ("constraint", "loc-G")}
    details = by_id[("resource", "IP-HA-01")].details
    assert [(d.field, d.old, d.new) for d in details] == [("meta.target-role", "Started", "Stopped")]
    assert [(d.field, d.old, d.new) for d in by_id[("constraint", "loc-G")].details] == [
        ("score", "100", "200")]

    cur = live()
    patch = build_live_patch(cur, want)
    assert patch.patch.source == CibVersion(0, 42, 7)
    assert patch.patch.target == CibVersion(0, 43, 0)
    assert patch.patch_xml().count("<change ") == 2  # two modifies, the ids are the live ones
    rc, err, applied = cibadmin_patch(cur, patch.patch_xml(), tmp_path)
    assert rc == 0, err
    assert CibVersion.of(applied).epoch == 43
    assert not diff_cib(applied, want, semantic=True).changed
    # Cluster-managed properties survived the patch.
    names = {nv.get("name") for nv in applied.iter("nvpair")}
    assert {"dc-version", "cluster-infrastructure", "last-lrm-refresh", "cluster-name"} <= names


def test_cluster_name_set_in_desired_is_user_configuration() -> None:
    want = desired()
    props = want.find("configuration/crm_config/cluster_property_set")
    etree.SubElement(props, "nvpair", id="cn", name="cluster-name", value="other")
    objs = diff_cib(live(), want, semantic=True).objects()
    assert [(o.kind, o.id, o.details[0].old, o.details[0].new) for o in objs] == [
        ("property", "cluster-name", "ha", "other")]


def test_removed_and_added_objects() -> None:
    want = desired()
    group = want.find("configuration/resources/group")
    group.remove(group.find("primitive[@id='web']"))
    cons = want.find("configuration/constraints")
    etree.SubElement(cons, "rsc_order", id="o1", first="a", then="b")
    objs = {(o.kind, o.id): o.action for o in diff_cib(live(), want, semantic=True).objects()}
    assert objs == {("resource", "web"): "removed", ("resource", "G"): "changed",
                    ("constraint", "o1"): "added"}


def test_group_order_is_a_change() -> None:
    want = desired()
    group = want.find("configuration/resources/group")
    web = group.find("primitive[@id='web']")
    group.remove(web)
    group.insert(0, web)
    result = diff_cib(live(), want, semantic=True)
    assert '<change operation="move"' in result.patch_xml()
    group_change = next(o for o in result.objects() if o.id == "G")
    assert group_change.details[0].old == "IP-HA-01, web"
    assert group_change.details[0].new == "web, IP-HA-01"


def test_ignore_rule_whole_element_and_attribute(tmp_path: Path) -> None:
    want = desired()
    _set(want, "target-role", "Stopped")
    want.find("configuration/constraints/rsc_location").set("score", "200")
    rules = [IgnoreRule(xpath="//meta_attributes/nvpair[@name='target-role']",
                        reason="operators start/stop by hand"),
             IgnoreRule(xpath="configuration/constraints/rsc_location", attribute="score")]
    result = diff_cib(live(), want, semantic=True, ignore=rules)
    assert not result.changed, result.patch_xml()
    # Only the ignored fields are ignored.
    _set(want, "ip", "10.0.0.11")
    result = diff_cib(live(), want, semantic=True, ignore=rules)
    assert [(o.id, [d.field for d in o.details]) for o in result.objects()] == [("IP-HA-01", ["params.ip"])]
    rc, err, applied = cibadmin_patch(live(), build_live_patch(live(), want, ignore=rules).patch_xml(),
                                      tmp_path)
    assert rc == 0, err
    roles = [nv.get("value") for nv in applied.iter("nvpair") if nv.get("name") == "target-role"]
    assert roles == ["Started"]  # live value kept


def test_ignore_rule_validation() -> None:
    with pytest.raises(ValidationError, match="invalid XPath"):
        IgnoreRule(xpath="//nvpair[")
    with pytest.raises(ValidationError):
        IgnoreRule(xpath="//nvpair", attribute="@value")
    with pytest.raises(ValidationError):
        IgnoreRule.model_validate({"xpath": "//nvpair", "unknown": "x"})
    with pytest.raises(InputError, match="must select elements"):
        diff_cib(live(), desired(), semantic=True, ignore=[IgnoreRule(xpath="count(//nvpair)")])
    rule = IgnoreRule.model_validate({"xpath": "//node", "reason": "nodes join by themselves"})
    assert rule.attribute is None


def test_durations() -> None:
    assert duration_ms("30") == duration_ms("30s") == duration_ms("30000ms") == duration_ms("PT30S") == 30000
    assert duration_ms("1m") == duration_ms("60") == 60000
    assert duration_ms("2h") == 7_200_000
    assert duration_ms("abc") is None
    assert duration_ms("10 parsecs") is None


def test_semantic_corpus_self_with_renamed_ids() -> None:
    """Every generated id of a corpus CIB renamed: semantic sees nothing, exact sees changes."""
    for name in ("params-1", "group5", "rsc-sets-seq-true", "promoted-0"):
        a = current(SCHEDULER / f"{name}.xml")
        b = copy.deepcopy(a)
        for elem in b.iter("nvpair", "op", "meta_attributes", "instance_attributes", "rule",
                           "expression", "cluster_property_set"):
            if elem.get("id") is not None:
                elem.set("id", "renamed-" + elem.get("id"))
        assert diff_cib(a, b).changed, name
        assert not diff_cib(a, b, semantic=True).changed, (name, diff_cib(a, b, semantic=True).patch_xml())


def test_exact_config_round_trip_via_semantic_live_patch(tmp_path: Path) -> None:
    """A desired file with a new resource: the live patch adds it, with the desired ids."""
    want = desired()
    res = want.find("configuration/resources")
    etree.SubElement(res, "primitive",
                     {"id": "extra", "type": "Dummy", "provider": "heartbeat", "class": "ocf"})
    rc, err, applied = cibadmin_patch(live(), build_live_patch(live(), want).patch_xml(), tmp_path)
    assert rc == 0, err
    assert applied.find("configuration/resources/primitive[@id='extra']") is not None
    assert config_text(applied) != config_text(live())
