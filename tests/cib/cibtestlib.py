"""Helpers for the CIB tests: the real Pacemaker tools, run on copies in a temporary folder."""

from __future__ import annotations

import functools
import itertools
import re
from collections import defaultdict
from pathlib import Path

from lxml import etree

from controller.cib.document import canonical, load_cib_bytes
from controller.command import run
from tests.conftest import CORPUS

CORPUS = CORPUS / "cib"
SCHEDULER = CORPUS / "pacemaker-scheduler"
# Pacemaker 2.1.5 ships schemas up to pacemaker-3.9.
UNSUPPORTED_SCHEMAS = ("pacemaker-3.10",)


@functools.cache
def feature_set() -> str:
    """The crm_feature_set of the installed tools: cibadmin refuses anything newer."""
    empty = run(["cibadmin", "--empty"], timeout=30).stdout
    found = re.search(r'crm_feature_set="([^"]+)"', empty)
    assert found, empty
    return found.group(1)


def family_pairs() -> list[tuple[Path, Path]]:
    """Consecutive members of each corpus family: name minus trailing digits or -N."""
    families: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in sorted(SCHEDULER.glob("*.xml")):
        m = re.fullmatch(r"(.*?)(?:-(\d+)|(\d+))", path.stem)
        if m and m.group(1):
            families[m.group(1)].append((int(m.group(2) or m.group(3)), path))
        else:  # "994" heads the family of "994-2"; "order" would head "order1"
            families[path.stem].append((-1, path))
    pairs = []
    for members in families.values():
        members.sort()
        pairs += [(a, b) for (_, a), (_, b) in itertools.pairwise(members)]
    return pairs


def current(path: Path) -> etree._Element:
    """A corpus CIB raised to the tools' feature set (older ones get format-1 patches)."""
    cib = load_cib_bytes(path.read_bytes(), source=str(path))
    cib.set("crm_feature_set", feature_set())
    return cib


def unsupported(*cibs: etree._Element) -> bool:
    return any(c.get("validate-with") in UNSUPPORTED_SCHEMAS for c in cibs)


def write(cib: etree._Element, path: Path) -> Path:
    path.write_bytes(etree.tostring(cib, xml_declaration=False, encoding="utf-8"))
    return path


def cibadmin_patch(old: etree._Element, patch_xml: str, workdir: Path,
                   name: str = "work") -> tuple[int, str, etree._Element]:
    """Apply a patch with the real `CIB_file=COPY cibadmin --patch`; (rc, stderr, resulting CIB)."""
    work = write(old, workdir / f"{name}.xml")
    patch = workdir / f"{name}.patch.xml"
    patch.write_text(patch_xml)
    res = run(["cibadmin", "--patch", "--xml-file", str(patch)], env={"CIB_file": str(work)},
              timeout=60, check=False)
    return res.returncode, res.stderr, load_cib_bytes(work.read_bytes(), source=str(work))


def config_text(cib: etree._Element) -> str:
    conf = cib.find("configuration")
    assert conf is not None
    return canonical(conf)


def bump_target(patch_xml: str) -> str:
    """crm_diff copies the versions of the two files; cibadmin needs the target above the source."""
    tree = etree.fromstring(patch_xml.encode())
    src, tgt = tree.find("version/source"), tree.find("version/target")
    if tuple(int(tgt.get(k, 0)) for k in ("admin_epoch", "epoch", "num_updates")) <= \
            tuple(int(src.get(k, 0)) for k in ("admin_epoch", "epoch", "num_updates")):
        tgt.set("epoch", str(int(src.get("epoch", 0)) + 1))
        tgt.set("num_updates", "0")
        tgt.set("admin_epoch", src.get("admin_epoch", "0"))
    return etree.tostring(tree).decode()
