"""Normalisation for the semantic diff: what Pacemaker writes itself is never a difference.

The desired tree is rewritten so that, wherever a field is cluster-managed or ignored, it carries
the live value (live wins, at the live position); the exact diff of live against that tree is then
empty for those fields and the patch built from it leaves them alone.

Cluster-managed fields (written by Pacemaker 2.1.5 itself, not by the user):
- <cib> attributes: admin_epoch, epoch, num_updates (the version, carried by the patch itself),
  cib-last-written, update-origin, update-client, update-user (pacemaker-based on every write),
  have-quorum, dc-uuid (the controller), crm_feature_set (raised by the DC on upgrade);
  a bare <configuration> file takes every <cib> attribute (validate-with, ...) from live;
- the whole <status> section (node state and operation history);
- crm_config properties the controller writes on DC takeover: dc-version,
  cluster-infrastructure, have-watchdog; last-lrm-refresh (crm_resource --refresh/cleanup);
- cluster-name only when the desired state does not set it: the DC fills it from corosync.conf
  when absent, but a value the user sets is user configuration;
- comments in live (a comment is not configuration; desired comments are dropped).

Ignore rules (`IgnoreRule`, from cluster.toml `[[ignore]]`): elements matching `xpath`, evaluated
relative to /cib on both trees, are excluded on both sides (live kept); with `attribute`, only that
attribute of the matched elements is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from functools import cached_property

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.cib.xml import attr_items
from controller.errors import InputError

MANAGED_CIB_ATTRIBUTES: tuple[str, ...] = (
    "admin_epoch", "epoch", "num_updates", "cib-last-written", "update-origin", "update-client",
    "update-user", "have-quorum", "dc-uuid", "crm_feature_set")
MANAGED_PROPERTIES: tuple[str, ...] = (
    "dc-version", "cluster-infrastructure", "have-watchdog", "last-lrm-refresh")
MANAGED_IF_UNSET_PROPERTIES: tuple[str, ...] = ("cluster-name",)


class IgnoreRule(BaseModel):
    """One `[[ignore]]` table: leave what `xpath` selects (or its `attribute`) as it is live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    xpath: str = Field(min_length=1, description="XPath 1.0 relative to /cib, selecting elements")
    attribute: str | None = Field(default=None, min_length=1,
                                  description="only this attribute of the selected elements")
    reason: str = ""

    @field_validator("xpath")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            etree.XPath(value)
        except etree.XPathSyntaxError as exc:
            raise ValueError(f"invalid XPath {value!r}: {exc}") from None
        return value

    @field_validator("attribute")
    @classmethod
    def _attribute_name(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("@") or any(c in value for c in " /[]='\"")):
            raise ValueError(f"attribute must be a plain attribute name, got {value!r}")
        return value

    @cached_property
    def compiled(self) -> etree.XPath:
        return etree.XPath(self.xpath)

    def select(self, cib: etree._Element, *, side: str) -> list[etree._Element]:
        try:
            found = self.compiled(cib)
        except etree.XPathEvalError as exc:
            raise InputError(f"ignore rule {self.xpath!r} failed on the {side} CIB: {exc}") from None
        if not isinstance(found, list):
            raise InputError(f"ignore rule {self.xpath!r} must select elements (on the {side} CIB)")
        elements: list[etree._Element] = []
        for e in found:
            if not isinstance(e, etree._Element) or not isinstance(e.tag, str):
                raise InputError(f"ignore rule {self.xpath!r} must select elements (on the {side} CIB)")
            if e is not cib:
                elements.append(e)
        return elements


# ------------------------------------------------------------------------------ tree addressing

_Key = tuple[str, str | None, int]


class _Index:
    """Child keys per parent (tag + id, or tag + rank), computed once per parent."""

    def __init__(self) -> None:
        self._keys: dict[etree._Element, dict[etree._Element, _Key]] = {}
        self._by_key: dict[etree._Element, dict[_Key, etree._Element]] = {}

    def _build(self, parent: etree._Element) -> None:
        keys: dict[etree._Element, _Key] = {}
        ranks: dict[tuple[str, str | None], int] = {}
        for child in parent:
            if isinstance(child.tag, str):
                base: tuple[str, str | None] = (child.tag, child.get("id"))
            else:
                base = ("#node", child.text)
            rank = ranks.get(base, 0)
            ranks[base] = rank + 1
            keys[child] = (base[0], base[1], rank)
        self._keys[parent] = keys
        self._by_key[parent] = {k: c for c, k in keys.items()}

    def key(self, node: etree._Element) -> _Key:
        parent = node.getparent()
        assert parent is not None
        if parent not in self._keys:
            self._build(parent)
        return self._keys[parent][node]

    def child(self, parent: etree._Element, key: _Key) -> etree._Element | None:
        if parent not in self._by_key:
            self._build(parent)
        return self._by_key[parent].get(key)

    def forget(self, parent: etree._Element) -> None:
        self._keys.pop(parent, None)
        self._by_key.pop(parent, None)


def _ancestry(node: etree._Element) -> list[etree._Element]:
    """node and its ancestors below the root, root-most first."""
    chain = []
    parent = node.getparent()
    while parent is not None:
        chain.append(node)
        node, parent = parent, parent.getparent()
    chain.reverse()
    return chain


def _counterpart(node: etree._Element, live_index: _Index, desired_root: etree._Element,
                 desired_index: _Index, *, create: bool) -> etree._Element | None:
    """The element of the desired tree at the same place as live `node`.

    With create, missing elements on the way are added as shallow copies of the live ones (so a
    kept nvpair keeps a set to live in)."""
    current = desired_root
    for live_node in _ancestry(node):
        found = desired_index.child(current, live_index.key(live_node))
        if found is None:
            if not create:
                return None
            found = etree.SubElement(current, live_node.tag, dict(attr_items(live_node)))
            desired_index.forget(current)
        current = found
    return current


def keep_live(live: etree._Element, desired: etree._Element, nodes: Iterable[etree._Element]) -> None:
    """Put a copy of each live node into desired at the same place, replacing what is there."""
    live_index, desired_index = _Index(), _Index()
    for node in nodes:
        parent = node.getparent()
        if parent is None:
            continue
        target_parent = _counterpart(parent, live_index, desired, desired_index, create=True)
        assert target_parent is not None
        existing = desired_index.child(target_parent, live_index.key(node))
        replacement = copy.deepcopy(node)
        replacement.tail = None
        if existing is not None:
            target_parent.replace(existing, replacement)
        else:
            position = 0
            previous = node.getprevious()
            if previous is not None:
                before = desired_index.child(target_parent, live_index.key(previous))
                position = target_parent.index(before) + 1 if before is not None else len(target_parent)
            target_parent.insert(position, replacement)
        desired_index.forget(target_parent)


def _remove(nodes: Iterable[etree._Element]) -> None:
    for node in nodes:
        parent = node.getparent()
        if parent is not None:
            parent.remove(node)


def _properties(cib: etree._Element, names: Sequence[str]) -> list[etree._Element]:
    wanted = set(names)
    return [nv for nv in cib.iterfind("configuration/crm_config/cluster_property_set/nvpair")
            if nv.get("name") in wanted]


def normalize(live: etree._Element, desired: etree._Element,
              ignore: Sequence[IgnoreRule] = (), *, bare_desired: bool = False) -> None:
    """Rewrite `desired` in place so cluster-managed and ignored fields equal live's.

    Both are <cib> roots without <status> (the caller drops it); live is not modified."""
    # <cib> attributes
    names = [k for k, _ in attr_items(live)] if bare_desired else MANAGED_CIB_ATTRIBUTES
    for name in names:
        value = live.get(name)
        if value is None:
            desired.attrib.pop(name, "")
        else:
            desired.set(name, value)

    # Comments: dropped from desired, live's kept where they are.
    _remove([c for c in desired.iter(etree.Comment, etree.ProcessingInstruction)])
    kept: list[etree._Element] = list(live.iter(etree.Comment))

    # Cluster-managed properties: live wins; cluster-name too unless desired sets it.
    _remove(_properties(desired, MANAGED_PROPERTIES))
    kept += _properties(live, MANAGED_PROPERTIES)
    if not _properties(desired, MANAGED_IF_UNSET_PROPERTIES):
        kept += _properties(live, MANAGED_IF_UNSET_PROPERTIES)

    whole_rules = [r for r in ignore if r.attribute is None]
    attr_rules = [r for r in ignore if r.attribute is not None]
    for rule in whole_rules:
        _remove(rule.select(desired, side="desired"))
        kept += rule.select(live, side="live")
    # Document order, so a kept node's previous live sibling is placed before it.
    order = {node: i for i, node in enumerate(live.iter())}
    keep_live(live, desired, sorted(set(kept), key=order.__getitem__))

    for rule in attr_rules:
        _apply_attribute_rule(rule, live, desired)


def _apply_attribute_rule(rule: IgnoreRule, live: etree._Element, desired: etree._Element) -> None:
    name = rule.attribute
    assert name is not None
    live_index, desired_index = _Index(), _Index()
    matched: set[etree._Element] = set()
    for node in rule.select(live, side="live"):
        twin = _counterpart(node, live_index, desired, desired_index, create=False)
        if twin is None:
            continue
        matched.add(twin)
        value = node.get(name)
        if value is None:
            twin.attrib.pop(name, "")
        else:
            twin.set(name, value)
    for node in rule.select(desired, side="desired"):
        if node not in matched:  # new in desired: the attribute is not ours to set
            node.attrib.pop(name, "")
