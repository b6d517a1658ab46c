"""Cluster options (crm_config properties) as Pacemaker's scheduler reads them (pure).

Pacemaker 2.1's unpack_config() reads every cluster_property_set of crm_config ordered by score, highest
first, with `cib-bootstrap-options` first among equal scores (CIB_OPTIONS_FIRST), and the first set that
names an option wins. A set with a rule applies only when the rule matches: it is reported apart, since
whether it applies depends on the time and the node.
"""

from __future__ import annotations

from lxml import etree
from pydantic import BaseModel, ConfigDict

from controller.cib.booleans import crm_boolean

BOOTSTRAP_SET = "cib-bootstrap-options"
_INFINITY = 1_000_000


class OptionValue(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: str
    set_id: str
    nvpair_id: str
    conditional: bool  # from a set with a rule: applies only while the rule matches


def _score(pset: etree._Element) -> int:
    raw = (pset.get("score") or "0").strip().lower().lstrip("+")
    if raw in ("infinity", "inf"):
        return _INFINITY
    if raw in ("-infinity", "-inf"):
        return -_INFINITY
    try:
        return int(raw)
    except ValueError:
        return 0


def _ordered_sets(configuration: etree._Element) -> list[etree._Element]:
    root = configuration.find("configuration") if configuration.tag == "cib" else configuration
    sets = list(root.iterfind("crm_config/cluster_property_set")) if root is not None else []
    # sorted() is stable: equal scores keep document order, bootstrap set first among them
    return sorted(sets, key=lambda s: (-_score(s), s.get("id") != BOOTSTRAP_SET))


def cluster_option(configuration: etree._Element, name: str) -> list[OptionValue]:
    """The values `name` can take: the unconditional one that wins (if any) first, then those of rule
    sets that come before it in Pacemaker's order (each would win while its rule matches)."""
    out: list[OptionValue] = []
    for pset in _ordered_sets(configuration):
        nv = pset.find(f"nvpair[@name='{name}']")
        if nv is None or nv.get("value") is None:
            continue
        conditional = pset.find("rule") is not None
        out.append(OptionValue(value=nv.get("value", ""), set_id=pset.get("id", ""),
                               nvpair_id=nv.get("id", ""), conditional=conditional))
        if not conditional:
            break
    return out


def option_enabled(configuration: etree._Element, name: str, default: bool) -> bool:
    """A boolean option's unconditional value as Pacemaker reads it (crm_boolean; unreadable: default)."""
    fixed = [v for v in cluster_option(configuration, name) if not v.conditional]
    value = crm_boolean(fixed[0].value) if fixed else None
    return default if value is None else value
