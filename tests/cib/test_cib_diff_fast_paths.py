"""The diff's fast paths give the same patch as the general one; the parallel loader's errors."""

from __future__ import annotations

import copy
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from controller.cib import patchset
from controller.cib.diff import diff_cib, diff_files
from controller.cib.document import load_cib, load_cib_pair
from controller.errors import InputError
from tests.cib.test_cib_diff_hypothesis import EDITS, SEED_FILES, _edit

# Edits that keep most parents' children in place, so the aligned path is taken above them.
IN_PLACE = st.tuples(st.sampled_from(["nvpair-value", "attr-set", "attr-unset", "nvpair-add",
                                      "nvpair-remove"]),
                     st.integers(min_value=0, max_value=1000),
                     st.text(alphabet="abcxyz019 _-", min_size=1, max_size=8))


@settings(max_examples=60, deadline=None)
@given(seed=st.sampled_from(SEED_FILES), edits=st.lists(st.one_of(IN_PLACE, EDITS), min_size=1,
                                                        max_size=5))
def test_aligned_path_gives_the_general_paths_patch(seed: Path, edits: list[tuple[str, int, str]]
                                                    ) -> None:
    old = load_cib(seed)
    new = copy.deepcopy(old)
    for kind, pick, text in edits:
        _edit(new, kind, pick, text)
    fast = patchset.make_patchset(old, new).to_xml()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(patchset, "_element_ids", lambda kids: None)  # never aligned: general path
        general = patchset.make_patchset(old, new).to_xml()
    assert fast == general


def _cib(*sections: str) -> etree._Element:
    return etree.fromstring(f'<cib epoch="1"><configuration>{"".join(sections)}</configuration>'
                            "<status/><status/></cib>")


def test_identical_duplicate_sections_are_no_change() -> None:
    """Sections are looked into rather than serialised, except duplicates, which cannot be."""
    old = _cib("<resources/>", "<resources/>", '<constraints><rsc_order id="o"/></constraints>')
    new = _cib("<resources/>", "<resources/>", '<constraints><rsc_order id="o" kind="x"/></constraints>')
    changes = patchset.diff_trees(old, new)
    assert [(c.operation, c.path) for c in changes] == [
        ("modify", "/cib/configuration/constraints/rsc_order[@id='o']")]
    new.find("configuration/resources").set("x", "1")  # unaddressable: <configuration> is replaced
    changes = patchset.diff_trees(old, new)
    assert [(c.operation, c.path) for c in changes] == [("delete", "/cib/configuration"),
                                                        ("create", "/cib")]


def test_pair_loader_reports_old_first(tmp_path: Path) -> None:
    good, bad_a, bad_b = tmp_path / "good.xml", tmp_path / "a.xml", tmp_path / "b.xml"
    good.write_bytes(b'<cib epoch="1"><configuration/></cib>')
    bad_a.write_bytes(b"<cib>")
    bad_b.write_bytes(b"<configuration><x></configuration>")
    old, new = load_cib_pair(good, good)
    assert old is not new and old.tag == new.tag == "cib"
    with pytest.raises(InputError, match=r"a\.xml"):
        load_cib_pair(bad_a, bad_b)
    with pytest.raises(InputError, match=r"b\.xml"):
        load_cib_pair(good, bad_b)
    with pytest.raises(InputError, match="cannot read"):
        load_cib_pair(good, tmp_path / "missing.xml")


@pytest.mark.parametrize("semantic", [False, True])
def test_files_loaded_in_parallel_diff_as_loaded_one_by_one(semantic: bool) -> None:
    for a, b in pairwise(SEED_FILES):
        threaded = diff_files(a, b, semantic=semantic)
        serial = diff_cib(load_cib(a), load_cib(b), semantic=semantic)
        assert threaded.patch_xml() == serial.patch_xml()
        assert threaded.objects() == serial.objects()
