"""`export --move-secrets`: clear-text secret-looking resource parameters become `@secret:` references."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from controller.audit.masking import is_secret_name
from controller.cib.export import move_secrets, secret_name_for
from controller.cli.adoption import _list_recipients
from controller.desired.policy import load_policy

CIB = b"""<cib><configuration><resources>
<primitive id="fence-ipmi" class="stonith" type="fence_ipmilan"><instance_attributes id="fi-ia">
<nvpair id="fi-ip" name="ip" value="10.0.0.9"/><nvpair id="fi-pw" name="password" value="s3cret"/>
</instance_attributes><meta_attributes id="fi-m"><nvpair id="fi-mpw" name="password" value="meta"/>
</meta_attributes></primitive>
<primitive id="db" class="ocf" provider="heartbeat" type="pgsql"><instance_attributes id="db-ia">
<nvpair id="db-pw" name="passwd" value="lrm://"/></instance_attributes></primitive>
</resources></configuration></cib>"""
RECIPIENT = "age1ld9jawawdfnpcny3ezga2rek4newqls8zwrvjc5pfa85zqltrvasgx7utn"


def test_instance_parameters_move_the_rest_stays() -> None:
    cib = etree.fromstring(CIB)
    moved = move_secrets(cib, is_secret_name)
    assert moved == {"fence-ipmi_password": "s3cret"}
    assert cib.find(".//nvpair[@id='fi-pw']").get("value") == "@secret:fence-ipmi_password"
    assert cib.find(".//nvpair[@id='fi-ip']").get("value") == "10.0.0.9"
    assert cib.find(".//nvpair[@id='fi-mpw']").get("value") == "meta"
    assert cib.find(".//nvpair[@id='db-pw']").get("value") == "lrm://"


def test_secret_names_are_valid_names() -> None:
    assert secret_name_for("rsc:0", "pass word") == "rsc_0_pass_word"


def test_recipients_are_listed_in_cluster_toml(tmp_path: Path) -> None:
    policy = tmp_path / "cluster.toml"
    policy.write_text("# skeleton\n[settle]\ntimeout = \"60s\"\n")
    _list_recipients(policy, [RECIPIENT])
    assert load_policy(policy).secrets.recipients == [RECIPIENT]
    _list_recipients(policy, [RECIPIENT, RECIPIENT.replace("ld9", "ld8")])
    assert len(load_policy(policy).secrets.recipients) == 2
