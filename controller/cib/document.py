"""A CIB document: loading (whole <cib> or bare <configuration>), its version, canonical form.

Kept free of pydantic so the exact diff path of the CLI starts fast.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from controller.cib.xml import attr_items, parse_xml_bytes, parse_xml_file, source_line
from controller.errors import InputError

VERSION_FIELDS: tuple[str, str, str] = ("admin_epoch", "epoch", "num_updates")


@dataclass(frozen=True, order=True)
class CibVersion:
    """(admin_epoch, epoch, num_updates): Pacemaker orders CIBs by this triple, left to right."""

    admin_epoch: int = 0
    epoch: int = 0
    num_updates: int = 0

    @classmethod
    def of(cls, cib: etree._Element, *, source: str = "<input>") -> CibVersion:
        values: list[int] = []
        for name in VERSION_FIELDS:
            raw = cib.get(name)
            if raw is None:
                values.append(0)  # what cibadmin assumes for a missing field when checking a patch
                continue
            try:
                value = int(raw)
            except ValueError:
                raise InputError(f"{name}={raw!r} is not an integer", file=source,
                                 line=source_line(cib), element="cib") from None
            values.append(max(value, 0))
        return cls(*values)

    def next_config(self) -> CibVersion:
        """What Pacemaker itself writes after a configuration change: epoch + 1, num_updates 0."""
        return CibVersion(self.admin_epoch, self.epoch + 1, 0)

    def as_attrs(self) -> dict[str, str]:
        return {"admin_epoch": str(self.admin_epoch), "epoch": str(self.epoch),
                "num_updates": str(self.num_updates)}


def patch_target(source: CibVersion, wanted: CibVersion) -> CibVersion:
    """The target version of a patch from `source`.

    cibadmin --patch refuses a patch whose target is not above its source ("Update was older than
    existing configuration", rc 103), so when `wanted` is not newer we bump like Pacemaker does.
    """
    return wanted if wanted > source else source.next_config()


def as_cib(root: etree._Element, *, source: str = "<input>") -> etree._Element:
    """Return the <cib> element; a bare <configuration> is wrapped in an attribute-less <cib>."""
    if root.tag == "cib":
        return root
    if root.tag == "configuration":
        cib = etree.Element("cib")
        cib.append(root)
        return cib
    raise InputError(f"expected a <cib> or <configuration> root element, found <{root.tag}>",
                     file=source, line=source_line(root))


def load_cib(path: str | Path) -> etree._Element:
    return as_cib(parse_xml_file(path), source=str(path))


def load_cib_pair(old: str | Path, new: str | Path) -> tuple[etree._Element, etree._Element]:
    """Both CIBs, `new` parsed on a second thread meanwhile: libxml2 parses without holding the
    GIL, so two big files take little more wall time than one. Errors are raised old first."""
    box: list[etree._Element | BaseException] = []

    def parse_new() -> None:
        try:
            box.append(load_cib(new))
        except BaseException as exc:  # handed to the caller below
            box.append(exc)

    worker = threading.Thread(target=parse_new, name="load-cib", daemon=True)
    worker.start()
    try:
        first = load_cib(old)
    finally:
        worker.join()
    second = box[0]
    if isinstance(second, BaseException):
        raise second
    return first, second


def load_cib_bytes(data: bytes, *, source: str = "<input>") -> etree._Element:
    return as_cib(parse_xml_bytes(data, source=source), source=source)


def configuration(cib: etree._Element) -> etree._Element | None:
    return cib.find("configuration")


def canonical(elem: etree._Element, *, comments: bool = True) -> str:
    """Text form independent of attribute order and indentation, for equality checks."""
    out: list[str] = []
    _canon(elem, 0, out, comments)
    return "\n".join(out)


def _canon(node: etree._Element, depth: int, out: list[str], comments: bool) -> None:
    pad = "  " * depth
    if not isinstance(node.tag, str):
        if comments and node.tag is etree.Comment:
            out.append(f"{pad}<!--{node.text}-->")
        return
    attrs = " ".join(f"{k}={v!r}" for k, v in sorted(attr_items(node)))
    text = (node.text or "").strip()
    out.append(f"{pad}<{node.tag} {attrs}>{text}")
    for child in node:
        _canon(child, depth + 1, out, comments)
