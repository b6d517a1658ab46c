"""The CIB diff, end to end: load, (semantic mode) adopt ids and normalise, diff, patchset.

    exact     ids are identity, like crm_diff
    semantic  desired elements meaning the same as live ones take their ids (adopt.py), and
              cluster-managed or ignored fields are no difference (normalize.py)

Exact mode imports no pydantic: the CLI's default path stays fast.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from controller.cib.document import CibVersion, load_cib_pair
from controller.cib.patchset import Patchset, make_patchset

if TYPE_CHECKING:
    from controller.cib.normalize import IgnoreRule
    from controller.cib.render import ObjectChange


@dataclass
class CibDiff:
    """What differs between two CIBs: the trees compared, and the patchset from old to new."""

    old: etree._Element
    new: etree._Element
    patch: Patchset

    @property
    def changed(self) -> bool:
        return bool(self.patch)

    def patch_xml(self) -> str:
        """The v2 patchset XML (empty string when nothing differs, as crm_diff prints nothing)."""
        return self.patch.to_xml() if self.patch else ""

    def objects(self) -> list[ObjectChange]:
        """The human rendering: one entry per added/removed/changed/moved object."""
        from controller.cib.render import describe

        return describe(self.old, self.new, self.patch)


def _without_status(cib: etree._Element) -> etree._Element:
    twin = copy.deepcopy(cib)
    for status in twin.findall("status"):
        twin.remove(status)
    return twin


def semantic_trees(live: etree._Element, desired: etree._Element,
                   ignore: Sequence[IgnoreRule] = ()) -> tuple[etree._Element, etree._Element]:
    """Copies of (live, desired) that differ only in meaning; neither input is modified."""
    from controller.cib.adopt import adopt
    from controller.cib.normalize import normalize

    bare = len(desired.attrib) == 0  # a bare <configuration> file was wrapped in an empty <cib>
    live_c = _without_status(live)
    desired_c = _without_status(desired)
    _drop_ignored(desired_c, ignore)  # normalize drops them anyway; before adoption they must not pair
    adopt(_without_ignored(live_c, ignore), desired_c)
    normalize(live_c, desired_c, ignore, bare_desired=bare)
    return live_c, desired_c


def _without_ignored(live: etree._Element, ignore: Sequence[IgnoreRule]) -> etree._Element:
    """Live as the desired ids are adopted from: without the elements ignore rules keep as they are
    live. Those are nobody's counterpart: a set of ours (the marker's, the sandbox's) at rank 0 would
    otherwise lend its id to the desired set at rank 0 (nvsets are matched by rank)."""
    if not any(r.attribute is None for r in ignore):
        return live
    out = copy.deepcopy(live)
    _drop_ignored(out, ignore, side="live")
    return out


def _drop_ignored(tree: etree._Element, ignore: Sequence[IgnoreRule], side: str = "desired") -> None:
    for rule in ignore:
        if rule.attribute is None:
            for node in rule.select(tree, side=side):
                parent = node.getparent()
                if parent is not None:
                    parent.remove(node)


def diff_cib(old: etree._Element, new: etree._Element, *, semantic: bool = False,
             ignore: Sequence[IgnoreRule] = ()) -> CibDiff:
    """Diff two <cib> trees (old = live in semantic mode). Versions come from the files; the
    target is raised above the source when it is not, or cibadmin --patch refuses the patch."""
    if semantic or ignore:
        old_t, new_t = semantic_trees(old, new, ignore)
        patch = make_patchset(old_t, new_t, source=CibVersion.of(old))
        return CibDiff(old_t, new_t, patch)
    return CibDiff(old, new, make_patchset(old, new))


def diff_files(old: str | Path, new: str | Path, *, semantic: bool = False,
               ignore: Sequence[IgnoreRule] = ()) -> CibDiff:
    return diff_cib(*load_cib_pair(old, new), semantic=semantic, ignore=ignore)


def build_live_patch(live: etree._Element, desired: etree._Element, *,
                     ignore: Sequence[IgnoreRule] = (), semantic: bool = True) -> CibDiff:
    """The patch the cluster adapter submits with `cibadmin --patch` against the running CIB.

    Source = live (admin_epoch, epoch, num_updates), which must match exactly when applied (else
    the CIB changed meanwhile: re-observe and re-plan); target = epoch + 1, num_updates 0, what
    Pacemaker writes after a configuration change. <status> is never touched."""
    source = CibVersion.of(live)
    if semantic or ignore:
        old_t, new_t = semantic_trees(live, desired, ignore)
    else:
        old_t, new_t = _without_status(live), _without_status(desired)
    patch = make_patchset(old_t, new_t, source=source, target=source.next_config())
    return CibDiff(old_t, new_t, patch)
