"""Masking secret values for display: names, XML configs, patches, text diffs, JSON, whole events."""

from __future__ import annotations

import pytest

from controller.audit.masking import MASK, is_secret_name, mask_json, mask_text, mask_xml
from controller.audit.models import AuditEvent


@pytest.mark.parametrize("name", [
    "password", "passwd", "PASSWORD", "replication_passwd", "snmpPrivPasswd", "mypassword", "client_secret",
    "api_key", "apiKey", "APIKEY", "ssh-key", "key", "secret_key", "access_key", "auth_token", "token",
    "pass", "snmp_community", "community", "hexadecimal_kg", "passphrase", "psk", "credentials",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "monkey", "keyboard", "keystone_url", "passive", "bypass", "compass", "ip", "login", "username",
    "key_file", "identity_file", "passwd_script", "password_file", "target-role", "tokenizer", "",
])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_corosync_token_is_a_timeout_not_a_secret() -> None:
    conf = "totem {\n    token: 3000\n    token_retransmits_before_loss_const: 10\n    key: s3cr3tkey\n}\n"
    masked = mask_text(conf, corosync=True)
    assert masked == ("totem {\n    token: 3000\n    token_retransmits_before_loss_const: 10\n"
                      f"    key: {MASK}\n}}\n")


CONFIG = """<cib epoch="3">
  <configuration>
    <resources>
      <primitive id="fence-n1" class="stonith" type="fence_ipmilan">
        <instance_attributes id="fence-n1-ia">
          <nvpair id="fence-n1-ia-ip" name="ip" value="10.0.0.1"/>
          <nvpair id="fence-n1-ia-password" value="hunter2!" name="password"/>
          <nvpair id="fence-n1-ia-monkey" name="monkey" value="banana"/>
        </instance_attributes>
      </primitive>
    </resources>
  </configuration>
</cib>"""


def test_mask_xml_config_keeps_everything_else() -> None:
    masked = mask_xml(CONFIG)
    assert masked is not None
    assert "hunter2!" not in masked
    assert f'value="{MASK}" name="password"' in masked
    assert 'value="10.0.0.1"' in masked and 'value="banana"' in masked
    assert masked.splitlines()[4].startswith("        <instance_attributes")  # layout preserved


def test_mask_patch_modify_create_and_broken_xml() -> None:
    ia = "/cib/configuration/resources/primitive[@id='f']/instance_attributes[@id='f-ia']"
    patch = f"""<diff format="2">
  <version><source admin_epoch="0" epoch="3" num_updates="0"/>
    <target admin_epoch="0" epoch="4" num_updates="0"/></version>
  <change operation="modify" path="{ia}/nvpair[@id='f-ia-passwd']">
    <change-list><change-attr name="value" operation="set" value="newsecret"/></change-list>
    <change-result><nvpair id="f-ia-passwd" name="passwd" value="newsecret"/></change-result>
  </change>
  <change operation="modify" path="{ia}/nvpair[@id='f-ia-api_key']">
    <change-list><change-attr name="value" operation="set" value="k3y-value"/></change-list>
  </change>
  <change operation="modify" path="{ia}/nvpair[@id='f-ia-ip']">
    <change-list><change-attr name="value" operation="set" value="10.0.0.2"/></change-list>
  </change>
  <change operation="create" path="{ia}" position="1">
    <nvpair id="f-ia-token" name="token" value="tok-123"/>
  </change>
</diff>"""
    masked = mask_xml(patch)
    assert masked is not None
    for secret in ("newsecret", "k3y-value", "tok-123"):
        assert secret not in masked
    assert masked.count(MASK) == 4
    assert 'value="10.0.0.2"' in masked
    # Not well-formed (truncated): masked tag by tag, never shown in clear.
    broken = mask_xml('<nvpair name="password" value="x1y2z3"/><nvpair name="ip" value="1.2.3.4"')
    assert broken is not None and "x1y2z3" not in broken and MASK in broken


def test_mask_text_and_json_diffs() -> None:
    text = ('primitive fence-n1: password: old-pw -> new-pw\n  ip: 10.0.0.1 -> 10.0.0.2\n'
            'error: crm_resource failed: api_key="a b c"')
    masked = mask_text(text)
    assert masked == (f"primitive fence-n1: password: {MASK} -> {MASK}\n  ip: 10.0.0.1 -> 10.0.0.2\n"
                      f"error: crm_resource failed: api_key={MASK}")
    diff = {"changes": [{"name": "password", "old": "old-pw", "new": "new-pw", "path": "/x"},
                        {"name": "ip", "old": "1", "new": "2"}],
            "secret_token": "abc", "note": "set passwd=zz"}
    assert mask_json(diff) == {"changes": [{"name": "password", "old": MASK, "new": MASK, "path": "/x"},
                                           {"name": "ip", "old": "1", "new": "2"}],
                               "secret_token": MASK, "note": f"set passwd={MASK}"}


def test_mask_event_scrubs_known_secret_values_everywhere() -> None:
    ev = AuditEvent(id=1, prev_hash="0" * 64, hash="1" * 64, node="n1", kind="apply", outcome="failure",
                    config_after=CONFIG, summary="set fence password",
                    # A format the name rules cannot read: the literal value is still blanked.
                    diff=["fence-n1 / password", ["(unset)", "hunter2!"]],
                    error="cibadmin: rejected value 'hunter2!'",
                    details={"origin": {"update-user": "root"}, "oldpw": "hunter2!"})
    m = ev.masked()
    dumped = m.model_dump_json()
    assert "hunter2!" not in dumped
    assert m.diff == ["fence-n1 / password", ["(unset)", MASK]]
    assert m.error == f"cibadmin: rejected value '{MASK}'"
    assert m.details == {"origin": {"update-user": "root"}, "oldpw": MASK}
    assert m.summary == "set fence password"
    assert ev.config_after == CONFIG  # the stored event keeps the real value (rollback needs it)
    assert m.hash == ev.hash


def test_a_diff_field_change_of_a_secret_parameter_is_masked() -> None:
    diff = [{"kind": "resource", "id": "db", "action": "changed", "details": [
        {"field": "params.replication_passwd", "old": "old-pass-1", "new": "new-pass-2"},
        {"field": "params.ip", "old": "10.0.0.1", "new": "10.0.0.2"}]}]
    fields = mask_json(diff)[0]["details"]
    assert fields[0] == {"field": "params.replication_passwd", "old": MASK, "new": MASK}
    assert fields[1] == {"field": "params.ip", "old": "10.0.0.1", "new": "10.0.0.2"}
