"""Randomised edits of corpus CIBs. Cases where crm_diff's own patch does not apply are not valid
for Pacemaker and are dropped; for the rest our patch must apply and reproduce the new file."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from controller.cib.diff import diff_cib
from controller.command import run
from tests.cib.cibtestlib import SCHEDULER, bump_target, cibadmin_patch, config_text, current, write

# Small, varied corpus files: groups, clones, constraints with rules and sets, op defaults.
SEEDS = ["order1", "group1", "group5", "clone-anon-dup", "rsc-sets-seq-true", "rule-int-parse-3",
         "params-1", "promoted-0", "bundle-order-startup", "location-sets-templates",
         "colocation_constraint_stops_promoted", "one-or-more-1"]
SEED_FILES = [SCHEDULER / f"{s}.xml" for s in SEEDS if (SCHEDULER / f"{s}.xml").exists()]
_counter = [0]


def _fresh_id(prefix: str) -> str:
    _counter[0] += 1
    return f"{prefix}-hyp{_counter[0]}"


def _elements(cib: etree._Element, xpath: str) -> list[etree._Element]:
    found = cib.xpath(xpath)
    assert isinstance(found, list), found
    return [e for e in found if isinstance(e, etree._Element) and isinstance(e.tag, str)]


def _edit(cib: etree._Element, kind: str, pick: int, text: str) -> None:
    """One edit; a no-op when the CIB has nothing of that kind."""
    def one(xpath: str) -> etree._Element | None:
        found = _elements(cib, xpath)
        return found[pick % len(found)] if found else None

    if kind == "nvpair-value":
        nv = one("configuration//nvpair")
        if nv is not None:
            nv.set("value", text)
    elif kind == "nvpair-add":
        s = one("configuration//meta_attributes|configuration//instance_attributes")
        if s is not None:
            nv = etree.Element("nvpair", id=_fresh_id("nv"), name=f"n-{text}", value=text)
            s.insert(pick % (len(s) + 1), nv)
    elif kind == "nvpair-remove":
        nv = one("configuration//nvpair")
        if nv is not None:
            nv.getparent().remove(nv)
    elif kind == "attr-set":
        p = one("configuration/resources//primitive")
        if p is not None:
            p.set("description", text)
    elif kind == "attr-unset":
        p = one("configuration//*[@description]|configuration//op[@timeout]")
        if p is not None:
            p.attrib.pop("description" if "description" in p.attrib else "timeout")
    elif kind == "group-reorder":
        g = one("configuration/resources//group[count(primitive)>1]")
        if g is not None:
            kids = [k for k in g if k.tag == "primitive"]
            rotated = kids[pick % len(kids):] + kids[:pick % len(kids)]
            if pick % 2:
                rotated.reverse()
            for k in kids:
                g.remove(k)
            for k in rotated:
                g.append(k)
    elif kind == "primitive-delete":
        p = one("configuration/resources/primitive")
        if p is not None:
            p.getparent().remove(p)
    elif kind == "primitive-add":
        res = cib.find("configuration/resources")
        if res is not None:
            new = etree.Element("primitive", {"id": _fresh_id("rsc"), "class": "ocf", "provider": "heartbeat",
                                              "type": "Dummy"})
            ops = etree.SubElement(new, "operations")
            etree.SubElement(ops, "op", id=_fresh_id("op"), name="monitor", interval="10s")
            res.insert(pick % (len(res) + 1), new)
    elif kind == "constraint-delete":
        c = one("configuration/constraints/*")
        if c is not None:
            c.getparent().remove(c)
    elif kind == "move-to-end":
        c = one("configuration/constraints/*|configuration/resources/*")
        if c is not None:
            parent = c.getparent()
            parent.remove(c)
            parent.append(c)
    elif kind == "comment-add":
        res = cib.find("configuration/resources")
        if res is not None:
            # XML forbids "--" inside a comment: such text is not a comment anyone could write
            res.insert(pick % (len(res) + 1), etree.Comment(f" {text.replace('-', '_')} "))


EDITS = st.tuples(st.sampled_from(["nvpair-value", "nvpair-add", "nvpair-remove", "attr-set",
                                   "attr-unset", "group-reorder", "primitive-delete", "primitive-add",
                                   "constraint-delete", "move-to-end", "comment-add"]),
                  st.integers(min_value=0, max_value=1000),
                  st.text(alphabet="abcxyz019 _-", min_size=1, max_size=8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(seed=st.sampled_from(SEED_FILES), edits=st.lists(EDITS, min_size=1, max_size=5))
def test_random_edits_apply_and_reproduce(seed: Path, edits: list[tuple[str, int, str]]) -> None:
    old = current(seed)
    new = copy.deepcopy(old)
    for kind, pick, text in edits:
        _edit(new, kind, pick, text.strip() or "v")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        a, b = write(old, work / "old.xml"), write(new, work / "new.xml")
        theirs = run(["crm_diff", "-o", str(a), "-n", str(b)], timeout=60, check=False, ok_codes=(0, 1))
        if theirs.returncode == 0:
            assert not diff_cib(old, new).changed
            return
        rc, _err, _ = cibadmin_patch(old, bump_target(theirs.stdout), work, "theirs")
        assume(rc == 0)  # Pacemaker itself cannot take this edit (schema, ...): not a valid case
        result = diff_cib(old, new)
        assert result.changed
        rc, err, patched = cibadmin_patch(old, result.patch_xml(), work, "ours")
        assert rc == 0, err
        assert config_text(patched) == config_text(new)
