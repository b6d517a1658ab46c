"""A small desired folder with a `@secret:` parameter, and a live CIB for it (no crmsh: cib.xml)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

from lxml import etree

from controller.cib.document import as_cib
from controller.desired.crm_syntax import CrmConversion
from controller.desired.state import DesiredState, read_desired
from tests.conftest import REFERENCE

NODES = ("kamailio01", "kamailio02", "kamailio03")
VALUE = "hunter2-Zq9"


def cib_xml(ref: str = "@secret:pw", *, extra: str = "") -> str:
    nodes = "".join(f'<node id="{182190357 + i}" uname="{n}"/>' for i, n in enumerate(NODES))
    return (f'<configuration><crm_config/><nodes>{nodes}</nodes><resources>'
            '<primitive id="d1" class="ocf" provider="pacemaker" type="Dummy">'
            f'<instance_attributes id="d1-ia"><nvpair id="d1-pw" name="passwd" value="{ref}"/>'
            f'</instance_attributes></primitive>{extra}</resources><constraints/></configuration>\n')


def folder(tmp: Path, *, ref: str = "@secret:pw", secrets_file: bool = True, extra: str = "") -> Path:
    d = tmp / "c1"
    d.mkdir(exist_ok=True)
    (d / "corosync.conf").write_text((REFERENCE / "corosync.conf").read_text())
    (d / "cib.xml").write_text(cib_xml(ref, extra=extra))
    if secrets_file:
        (d / "secrets.age").write_text("-----BEGIN AGE ENCRYPTED FILE-----\n(test)\n")
    return d


def no_crm(text: str, source: str) -> CrmConversion:
    raise AssertionError("cib.xml only")


def load(d: Path, secrets: Mapping[str, str] | None = None) -> DesiredState:
    values = {"pw": VALUE} if secrets is None else secrets
    return read_desired(d, convert_crm=no_crm, decrypt_secrets=lambda text, source: values)


def live_of(state: DesiredState, *, with_resource: bool = True,
            signals: Mapping[str, str] | None = None) -> etree._Element:
    live = as_cib(copy.deepcopy(state.configuration()))
    live.attrib.update({"admin_epoch": "0", "epoch": "7", "num_updates": "3",
                        "validate-with": "pacemaker-3.9"})
    if not with_resource:
        for p in live.findall("configuration/resources/primitive"):
            p.getparent().remove(p)
    for node in live.iterfind("configuration/nodes/node"):
        value = (signals or {}).get(node.get("uname") or "")
        if value is not None:
            ia = etree.SubElement(node, "instance_attributes", id=f"nodes-{node.get('id')}")
            etree.SubElement(ia, "nvpair", id=f"nodes-{node.get('id')}-s", name="ha-gitops-secrets",
                             value=value)
    etree.SubElement(live, "status")
    return live
