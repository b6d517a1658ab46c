"""Secrets made fit for a preview sandbox (pure): which names a folder refers to, placeholders without an
identity, the real values with one, and what the report says about it."""

from __future__ import annotations

from controller.preview import Observation, build_report, report_markdown, report_text
from controller.secrets.model import value_problem
from controller.secrets.preview import (
    PreviewSecrets,
    placeholder,
    preview_values,
    referenced_names,
    uses_secrets,
)

CRM = ('primitive fence-ipmi stonith:fence_ipmilan params ip=10.0.0.9 password="@secret:ipmi_pw" \\\n'
       '\tpasswd_script=x\nprimitive db ocf:heartbeat:Dummy params pw=@secret:db.pw\n'
       '# an old one: @secret:retired\n')


def test_the_names_a_configuration_refers_to() -> None:
    assert referenced_names({"cib.crm": CRM}) == {"ipmi_pw", "db.pw", "retired"}
    assert referenced_names({"cib.xml": '<nvpair name="p" value="@secret:x1"/>'}) == {"x1"}
    assert referenced_names({"cib.crm": "primitive a Dummy params p=plain"}) == set()
    assert uses_secrets({"cib.crm": CRM}) and uses_secrets({"cib.crm": "", "secrets.age": "x"})
    assert not uses_secrets({"cib.crm": "primitive a Dummy", "corosync.conf": "@secret:y"})


def test_without_an_identity_each_name_gets_a_placeholder_pacemaker_can_store() -> None:
    values = preview_values({"cib.crm": CRM}, None)
    assert set(values) == {"ipmi_pw", "db.pw", "retired"}
    assert values["ipmi_pw"] == placeholder("ipmi_pw")
    assert all(value_problem(v) is None for v in values.values())
    # the same placeholders on both sides: a value-only change is no change in the preview
    assert preview_values({"cib.crm": CRM + "\n"}, None) == values


def test_with_an_identity_the_decrypted_values_are_used_as_they_are() -> None:
    assert preview_values({"cib.crm": CRM}, {"ipmi_pw": "real-1", "other": "v"}) == {"ipmi_pw": "real-1",
                                                                                   "other": "v"}


def test_the_report_says_how_secrets_were_handled_and_never_a_value() -> None:
    obs = Observation(base="main", head="pr", base_revision="a" * 40, head_revision="a" * 40,
                      secrets=PreviewSecrets(mode="placeholder", names=["db.pw", "ipmi_pw"]))
    report = build_report(None, obs)
    text, md = report_text(report), report_markdown(report)
    assert "Secrets: secrets (db.pw, ipmi_pw): placeholders (no --identity" in text
    assert "| secrets | secrets (db.pw, ipmi_pw): placeholders" in md
    assert "not previewed" in text
    real = build_report(None, obs.model_copy(update={"secrets": PreviewSecrets(mode="real", names=["x"])}))
    assert "the real values" in report_text(real)
    plain = build_report(None, obs.model_copy(update={"secrets": PreviewSecrets()}))
    assert "Secrets" not in report_text(plain) and "| secrets |" not in report_markdown(plain)
