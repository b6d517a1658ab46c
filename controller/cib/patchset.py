"""The tree diff that emits a Pacemaker v2 patchset (the format of `crm_diff`, applied by
`cibadmin --patch`).

Matching, as Pacemaker does: an element with an id is its (tag, id); an element without one is its
tag and rank among same-tag siblings; a comment is its text and rank. Children are indexed with
dicts, so the diff is linear in the size of the CIB; reordering uses a longest increasing
subsequence of the matched old positions (O(k log k) per parent), so the few children outside it
get a `move`. Equal subtrees are skipped by comparing their serialisations (in C); when both sides
have the same children in the same order, the usual case, only the pairs that differ are visited.

How Pacemaker 2.1.5 applies a v2 patchset (lib/common/patchset.c) shapes what we emit:
- a path step is `tag[@id='X']` or `tag`, resolved to the *first* child with that tag (and id), so
  only steps that are unique among siblings can be addressed; ids containing `/`, `'` or `[` cannot;
- a comment is addressed as `.../comment` plus its position (delete only), so comments can be
  created and deleted but not moved;
- first pass, in patch order: delete and modify happen at once, a moved element goes to the end of
  its parent; second pass: creates and moves, sorted by position, put each node at its index.
When a change cannot be addressed, the nearest addressable ancestor is replaced (delete + create),
which `cibadmin --patch` applies exactly.

Attribute order is not a difference (XML gives it no meaning). The version fields of the <cib>
element live in the patch's <version>, never in a modify.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from lxml import etree

from controller.cib.document import VERSION_FIELDS, CibVersion, patch_target
from controller.cib.xml import attr_items
from controller.errors import InputError

Operation = Literal["create", "modify", "delete", "move"]
# Past this many children a parent almost surely differs somewhere: skip the whole-subtree
# serialisation shortcut and compare its children one by one (keeps the work linear).
_BIG_PARENT = 32
# Likewise <cib>'s children and <configuration>'s sections (depth 1 and 2): few children but most
# of the document, so in a changed CIB serialising them whole is wasted work.
_CONTAINER_DEPTH = 2
_UNSAFE_ID_CHARS = frozenset("/'[]")


@dataclass(frozen=True)
class Change:
    """One <change> of a v2 patchset."""

    operation: Operation
    path: str
    position: int | None = None
    node: etree._Element | None = None  # create: the subtree to insert
    sets: tuple[tuple[str, str], ...] = ()  # modify: attributes set, in the new element's order
    unsets: tuple[str, ...] = ()  # modify: attributes removed
    result: tuple[tuple[str, str], ...] = ()  # modify: every attribute of the new element
    tag: str = ""  # modify: the element's tag (for <change-result>)


@dataclass
class Patchset:
    source: CibVersion
    target: CibVersion
    changes: list[Change] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def to_xml(self) -> str:
        return patchset_xml(self)


# ---------------------------------------------------------------------------------------- diff


def diff_trees(old: etree._Element, new: etree._Element) -> list[Change]:
    """Changes turning `old` into `new` (both <cib> roots), in the order crm_diff emits them:
    deletes (old document order), then modify/create/move (new document order)."""
    if old.tag != new.tag:
        raise InputError(f"cannot diff <{old.tag}> against <{new.tag}>")
    result = _diff_pair(old, new, "/" + old.tag, True, 0)
    if result is None:  # only when <cib> has ambiguous children, e.g. two <configuration>
        raise InputError("the CIB has duplicate top-level sections; no patch can address them")
    deletes, changes = result
    return deletes + changes


def _same(a: etree._Element, b: etree._Element) -> bool:
    """Known-identical subtrees (attribute order included: a mismatch only costs a closer look).
    False for a big subtree: it is compared child by child instead."""
    size_a, size_b = len(a), len(b)
    if size_a == 0 and size_b == 0:  # a leaf: cheaper than serialising
        return a.items() == b.items() and (a.text or "") == (b.text or "")
    if size_a > _BIG_PARENT or size_b > _BIG_PARENT:
        return False
    return (etree.tostring(a, encoding="unicode", with_tail=False)
            == etree.tostring(b, encoding="unicode", with_tail=False))


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)


def _element_ids(kids: list[etree._Element]) -> tuple[list[str], list[str | None]] | None:
    """Tags and ids of children that are all elements; None when a comment or PI is among them."""
    tags = [k.tag for k in kids]
    seen: Sequence[object] = tags  # lxml-stubs type every tag as str: a comment's is etree.Comment
    if etree.Comment in seen or etree.PI in seen or etree.Entity in seen:
        return None
    return tags, [k.get("id") for k in kids]


def _keys(kids: list[etree._Element]) -> tuple[list[tuple[str, str | None, int]],
                                               dict[tuple[str, str | None], int], dict[str, int]]:
    """Match keys of children plus the counts used to tell whether a path step is unique."""
    keys: list[tuple[str, str | None, int]] = []
    base_count: dict[tuple[str, str | None], int] = {}
    tag_count: dict[str, int] = {}
    for node in kids:
        tag = node.tag
        if isinstance(tag, str):
            ident = node.get("id")
            tag_count[tag] = tag_count.get(tag, 0) + 1
        elif tag is etree.Comment:
            tag, ident = "#comment", node.text
        else:  # processing instruction
            tag, ident = "#pi", etree.tostring(node, with_tail=False).decode()
        base = (tag, ident)
        rank = base_count.get(base, 0)
        base_count[base] = rank + 1
        keys.append((tag, ident, rank))
    return keys, base_count, tag_count


def _step(node: etree._Element) -> str | None:
    """The path step of an element, or None when its id cannot be written in a patch path."""
    ident = node.get("id")
    if ident is None:
        return node.tag
    if _UNSAFE_ID_CHARS.intersection(ident):
        return None
    return f"{node.tag}[@id='{ident}']"


def _unique(node: etree._Element, key: tuple[str, str | None, int],
            counts: Iterable[tuple[dict[tuple[str, str | None], int], dict[str, int]]]) -> bool:
    """Whether Pacemaker's first-match path lookup finds exactly this node in old and new parent."""
    if not _is_element(node):
        return False
    tag, ident, _rank = key
    for base_count, tag_count in counts:
        if ident is None:
            if tag_count.get(tag, 0) > 1:
                return False
        elif base_count.get((tag, ident), 0) > 1:
            return False
    return True


def _has_text(kids: list[etree._Element]) -> bool:
    # Text between children shifts libxml2's positions; a CIB has none, but never guess.
    return any(k.tail is not None and k.tail.strip() for k in kids)


def _lis_members(seq: list[int]) -> set[int]:
    """Indices (into seq) of one longest strictly increasing subsequence, O(n log n)."""
    tails: list[int] = []  # tails[k] = smallest tail value of an increasing run of length k+1
    tail_at: list[int] = []  # index into seq of that tail
    prev: list[int] = [-1] * len(seq)
    for i, value in enumerate(seq):
        k = bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_at.append(i)
        else:
            tails[k] = value
            tail_at[k] = i
        prev[i] = tail_at[k - 1] if k > 0 else -1
    members: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        members.add(i)
        i = prev[i]
    return members


_Result = tuple[list[Change], list[Change]]


def _diff_pair(old: etree._Element, new: etree._Element, path: str, addressable: bool,
               depth: int) -> _Result | None:
    """(deletes, other changes) turning old into new (at `depth` below <cib>), both known or
    likely to differ; None = replace me."""
    if not addressable:
        return None
    root = depth == 0
    if (old.text or "").strip() != (new.text or "").strip():
        return None  # element text cannot be patched; the parent replaces the element

    deletes: list[Change] = []
    changes: list[Change] = []
    new_all = attr_items(new)
    old_all = attr_items(old)
    if old_all != new_all:  # else nothing to modify (checked first: most pairs differ inside)
        old_attrs = dict(old_all)
        new_items = [(k, v) for k, v in new_all if not (root and k in VERSION_FIELDS)]
        sets = tuple((k, v) for k, v in new_items if old_attrs.get(k) != v)
        new_names = {k for k, _ in new_items}
        unsets = tuple(k for k in old_attrs
                       if k not in new_names and not (root and k in VERSION_FIELDS))
        if sets or unsets:
            changes.append(Change("modify", path, sets=sets, unsets=unsets, result=tuple(new_all),
                                  tag=new.tag))

    old_kids = list(old)
    new_kids = list(new)
    if not old_kids and not new_kids:
        return deletes, changes
    if len(old_kids) == len(new_kids):
        ids = _element_ids(old_kids)
        if ids is not None and ids == _element_ids(new_kids):
            return _diff_aligned(old_kids, new_kids, ids, path, depth, deletes, changes)
    old_keys, old_base, old_tags = _keys(old_kids)
    new_keys, new_base, new_tags = _keys(new_kids)
    counts = ((old_base, old_tags), (new_base, new_tags))
    old_at = {key: i for i, key in enumerate(old_keys)}
    if len(old_at) != len(old_keys):  # cannot happen: ranks make keys unique
        raise AssertionError("duplicate child keys")

    # Match children; recurse into the pairs that differ.
    matched_old: dict[int, int] = {}  # old index -> new index, for pairs kept (maybe moved)
    replaced_old: set[int] = set()
    replaced_new: set[int] = set()
    child_results: dict[int, _Result] = {}  # by new index
    child_paths: dict[int, str] = {}
    for j, key in enumerate(new_keys):
        i = old_at.get(key)
        if i is None:
            continue
        o, n = old_kids[i], new_kids[j]
        matched_old[i] = j
        if not _is_element(n):
            continue  # comments and PIs match by their text: nothing inside to change
        if depth >= _CONTAINER_DEPTH and _same(o, n):
            continue
        step = _step(n)
        unique = step is not None and _unique(n, key, counts)
        if not unique and depth < _CONTAINER_DEPTH and _same(o, n):
            continue  # a container is looked into unserialised only when it can be addressed
        child_path = f"{path}/{step}"
        child_paths[j] = child_path
        result = _diff_pair(o, n, child_path, unique, depth + 1)
        if result is None:
            if not unique:
                return None  # we cannot delete it either: replace ourselves
            replaced_old.add(i)
            replaced_new.add(j)
            del matched_old[i]
        elif result[0] or result[1]:
            child_results[j] = result

    # Deletes, in old document order, interleaved with the deletes inside kept children.
    gone = 0  # siblings deleted before this one: a comment's position counts without them
    for i, key in enumerate(old_keys):
        kept = matched_old.get(i)
        if kept is not None:
            if kept in child_results:
                deletes.extend(child_results[kept][0])
            continue
        node = old_kids[i]
        if isinstance(node, etree._Comment):
            deletes.append(Change("delete", f"{path}/comment", position=i - gone))
        else:
            step = _step(node) if _is_element(node) else None
            if step is None or not _unique(node, key, counts):
                return None
            deletes.append(Change("delete", f"{path}/{step}"))
        gone += 1

    # Which kept children move: those outside a longest run already in the right order.
    order = sorted(matched_old.items(), key=lambda item: item[1])  # by new index
    olds = [i for i, _j in order]
    if all(a < b for a, b in pairwise(olds)):
        moved_new: set[int] = set()  # the common case: nothing reordered
    else:
        keep = _lis_members(olds)
        moved_new = {j for pos, (_i, j) in enumerate(order) if pos not in keep}
    positioned = moved_new or replaced_new or len(new_kids) > len(matched_old)
    if positioned and (_has_text(old_kids) or _has_text(new_kids)):
        return None

    # Creates, modifies and moves, in new document order (a child's move after its insides).
    for j, node in enumerate(new_kids):
        if j in replaced_new or new_keys[j] not in old_at:
            changes.append(Change("create", path, position=j, node=node))
            continue
        if j in child_results:
            changes.extend(child_results[j][1])
        if j in moved_new:
            step = _step(node) if _is_element(node) else None
            if step is None or not _unique(node, new_keys[j], counts):
                return None
            changes.append(Change("move", child_paths.get(j) or f"{path}/{step}", position=j))
    return deletes, changes


def _shared(tags: list[str], keys: list[tuple[str, str | None]], j: int,
            counts: tuple[Counter[str], Counter[tuple[str, str | None]]] | None) -> int:
    """How many siblings Pacemaker's path step for child j matches: same tag when it has no id,
    else same tag and id."""
    if keys[j][1] is None:
        return counts[0][tags[j]] if counts else tags.count(tags[j])
    return counts[1][keys[j]] if counts else keys.count(keys[j])


def _diff_aligned(old_kids: list[etree._Element], new_kids: list[etree._Element],
                  ids: tuple[list[str], list[str | None]], path: str, depth: int,
                  deletes: list[Change], changes: list[Change]) -> _Result | None:
    """_diff_pair's children when both sides have the same elements (tag, id) in the same order,
    the usual case: nothing is created, deleted or moved, so only the pairs that differ are
    visited (same patch as the general path, at a fraction of the per-child work)."""
    if depth < _CONTAINER_DEPTH:
        differ = list(range(len(new_kids)))
    else:
        differ = [j for j, (o, n) in enumerate(zip(old_kids, new_kids, strict=True))
                  if not _same(o, n)]
    if not differ:
        return deletes, changes
    tags, idents = ids
    keys = list(zip(tags, idents, strict=True))
    # Count once for many children; a few are cheaper to scan.
    counts = (Counter(tags), Counter(keys)) if len(keys) > _BIG_PARENT else None
    replaced = False
    for j in differ:
        node = new_kids[j]
        step = _step(node)
        unique = step is not None and _shared(tags, keys, j, counts) == 1
        if not unique and depth < _CONTAINER_DEPTH and _same(old_kids[j], node):
            continue  # as in _diff_pair
        child_path = f"{path}/{step}"
        result = _diff_pair(old_kids[j], node, child_path, unique, depth + 1)
        if result is None:
            if not unique:
                return None  # we cannot delete it either: replace ourselves
            deletes.append(Change("delete", child_path))
            changes.append(Change("create", path, position=j, node=node))
            replaced = True
        else:
            deletes.extend(result[0])
            changes.extend(result[1])
    if replaced and (_has_text(old_kids) or _has_text(new_kids)):
        return None
    return deletes, changes


# ---------------------------------------------------------------------------------- rendering

_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _attrs(items: Iterable[tuple[str, str]]) -> str:
    return "".join(f' {k}="{v.translate(_ATTR_ESCAPES)}"' for k, v in items)


def _dump(node: etree._Element, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    tag = node.tag
    if not isinstance(tag, str):
        if tag is etree.Comment:
            out.append(f"{pad}<!--{node.text or ''}-->\n")
        else:
            out.append(pad + etree.tostring(node, with_tail=False).decode() + "\n")
        return
    head = f"{pad}<{tag}{_attrs(attr_items(node))}"
    text = (node.text or "").strip()
    if len(node) == 0 and not text:
        out.append(head + "/>\n")
        return
    if len(node) == 0:
        out.append(f"{head}>{text.translate(_TEXT_ESCAPES)}</{tag}>\n")
        return
    out.append(head + ">" + text.translate(_TEXT_ESCAPES) + "\n")
    for child in node:
        _dump(child, depth + 1, out)
    out.append(f"{pad}</{tag}>\n")


def patchset_xml(patch: Patchset) -> str:
    """The patchset as crm_diff prints it (2-space indent, `&apos;` in paths)."""
    out = ['<diff format="2">\n', "  <version>\n",
           f"    <source{_attrs(patch.source.as_attrs().items())}/>\n",
           f"    <target{_attrs(patch.target.as_attrs().items())}/>\n", "  </version>\n"]
    for ch in patch.changes:
        head = f'  <change operation="{ch.operation}" path="{ch.path.translate(_ATTR_ESCAPES)}"'
        if ch.operation == "delete":
            out.append(head + (f' position="{ch.position}"/>\n' if ch.position is not None else "/>\n"))
        elif ch.operation == "move":
            out.append(f'{head} position="{ch.position}"/>\n')
        elif ch.operation == "create":
            out.append(f'{head} position="{ch.position}">\n')
            assert ch.node is not None
            _dump(ch.node, 2, out)
            out.append("  </change>\n")
        else:
            out.append(head + ">\n    <change-list>\n")
            for name, value in ch.sets:
                attrs = _attrs([("name", name), ("operation", "set"), ("value", value)])
                out.append(f"      <change-attr{attrs}/>\n")
            for name in ch.unsets:
                out.append(f'      <change-attr{_attrs([("name", name), ("operation", "unset")])}/>\n')
            result = list(ch.result)
            if ch.path == "/cib":
                # apply_v2_patchset replaces every attribute by the result's: carry the version.
                version = patch.target.as_attrs()
                result = [(k, version.pop(k, v)) for k, v in result] + list(version.items())
            out.append("    </change-list>\n    <change-result>\n")
            out.append(f"      <{ch.tag}{_attrs(result)}/>\n    </change-result>\n  </change>\n")
    out.append("</diff>\n")
    return "".join(out)


def make_patchset(old: etree._Element, new: etree._Element, *, source: CibVersion | None = None,
                  target: CibVersion | None = None) -> Patchset:
    """Patchset from old to new; versions default to those of the two <cib> elements, the target
    raised above the source when it is not (cibadmin requires it)."""
    src = source if source is not None else CibVersion.of(old)
    wanted = target if target is not None else CibVersion.of(new)
    tgt = target if target is not None else patch_target(src, wanted)
    return Patchset(src, tgt, diff_trees(old, new))
