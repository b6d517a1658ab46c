"""The cluster-wide secrets signal and the writer's rule on it (pure).

Every agent writes its own node's Pacemaker secrets store (controller/cluster/secret_store.py) and then
says so in a permanent node attribute (ignored by the CIB diff, like the corosync rollout's):

    ha-gitops-secrets   "DIGEST"               this node's store holds every value of desired state DIGEST
                        "error:FILE:CAUSE"     this node cannot decrypt secrets.age (FILE: its digest;
                                               CAUSE: not-recipient, no-identity, other)

DIGEST (`store_digest`) covers every (resource, parameter, fingerprint): it names no value. The writer
writes a CIB change only when every online node reports the DIGEST of the revision it writes (`wait`
otherwise, so no resource starts with `lrm://` and no value behind it); a node reporting an error for
this secrets.age refuses the revision whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lxml import etree

from controller.desired.secret_refs import SecretParam

ATTR_SECRETS = "ha-gitops-secrets"
ERROR_PREFIX = "error:"
CAUSES = {"not-recipient": "its age identity is not one of secrets.age's recipients (add its recipient to "
                           "cluster.toml [secrets] recipients, then `ha-gitops secret recipients`)",
          "no-identity": "it has no age identity (the agent's age_identity setting)",
          "other": "decrypting failed (its agent's log says why)"}


def store_digest(params: Sequence[SecretParam]) -> str | None:
    """What a node's store must hold for these parameters; None: none, or not decrypted here."""
    if not params or any(p.fingerprint is None for p in params):
        return None
    h = hashlib.sha256()
    for p in sorted(params, key=lambda p: (p.resource, p.param)):
        h.update(f"{p.resource}\0{p.param}\0{p.fingerprint}\0".encode())
    return h.hexdigest()[:16]


def file_digest(data: bytes) -> str:
    """secrets.age's identity in an error signal (of its ciphertext)."""
    return hashlib.sha256(data).hexdigest()[:16]


def error_value(file: str, cause: str) -> str:
    return f"{ERROR_PREFIX}{file}:{cause if cause in CAUSES else 'other'}"


def node_signals(live: etree._Element) -> dict[str, str]:
    """node name -> its ha-gitops-secrets value, from the live <cib>."""
    out: dict[str, str] = {}
    for node in live.iterfind("configuration/nodes/node"):
        for nv in node.iterfind(f"instance_attributes/nvpair[@name='{ATTR_SECRETS}']"):
            out[node.get("uname") or node.get("id") or "?"] = nv.get("value") or ""
    return out


def undecryptable(signals: dict[str, str], online: Sequence[str], file: str | None) -> list[tuple[str, str]]:
    """(node, cause text) for every online node that says it cannot decrypt this secrets.age."""
    out = []
    for node in online:
        value = signals.get(node, "")
        if file and value.startswith(f"{ERROR_PREFIX}{file}:"):
            out.append((node, CAUSES.get(value.rsplit(":", 1)[1], CAUSES["other"])))
    return out


def pending(signals: dict[str, str], online: Sequence[str], want: str | None) -> list[str]:
    """Online nodes whose store does not yet hold what `want` names."""
    if want is None:
        return []
    return [n for n in online if signals.get(n) != want]


def set_signal(live: etree._Element, node: str, value: str) -> None:
    """Put a node's signal into a <cib> read before it was set (in place)."""
    for el in live.iterfind("configuration/nodes/node"):
        if (el.get("uname") or el.get("id")) != node:
            continue
        for nv in el.iterfind(f"instance_attributes/nvpair[@name='{ATTR_SECRETS}']"):
            nv.set("value", value)
            return
        attrs = el.find("instance_attributes")
        if attrs is None:
            attrs = etree.SubElement(el, "instance_attributes", id=f"nodes-{el.get('id')}")
        etree.SubElement(attrs, "nvpair", id=f"nodes-{el.get('id')}-{ATTR_SECRETS}", name=ATTR_SECRETS,
                         value=value)
