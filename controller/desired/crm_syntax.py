"""crm shell syntax as text (pure): crmsh's statement split, the ids each defines, the conversion's
result. Running crmsh to convert it is controller/desired/crm.py (the shell); the desired-state
loader (controller/desired/state.py) takes that conversion as a function, `CrmConverter`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from controller.desired.findings import Finding


@dataclass(frozen=True)
class Statement:
    number: int  # crmsh's 1-based statement number
    first_line: int
    last_line: int
    text: str

    @property
    def ids(self) -> list[str]:
        """Element ids this statement defines (the object id, and a node's uname)."""
        try:
            words = shlex.split(self.text, comments=False, posix=True)
        except ValueError:
            words = self.text.split()
        if len(words) < 2 or words[0].startswith("#"):
            return []
        ids = [words[1].rstrip(":")]
        if words[0] == "node" and len(words) > 2 and words[1].endswith(":"):
            ids.append(words[2])
        if "=" in ids[0]:  # "property stonith-enabled=true": the set gets crmsh's default id
            return []
        return ids


def crm_statements(text: str) -> list[Statement]:
    """Split crm text into statements exactly as crmsh does when it numbers its messages."""
    out: list[Statement] = []
    cum: list[str] = []
    start = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        part = raw.strip()
        if not cum:
            start = lineno
        if part.endswith("\\"):
            cum.append(part.rstrip("\\"))
            continue
        cum.append(part)
        joined = "".join(cum).strip()
        cum = []
        if joined:
            out.append(Statement(len(out) + 1, start, lineno, joined))
    if cum and "".join(cum):
        out.append(Statement(len(out) + 1, start, text.count("\n") + 1, "".join(cum)))
    return out


def crm_id_lines(text: str) -> dict[str, int]:
    """Element id -> line of the statement defining it."""
    lines: dict[str, int] = {}
    for st in crm_statements(text):
        for ident in st.ids:
            lines.setdefault(ident, st.first_line)
    return lines


class CrmConversion(BaseModel):
    """The <configuration> crmsh produced, and what it said on the way: crmsh's ERRORs that it
    committed past anyway (-F), e.g. a group naming a missing object, are error findings."""

    configuration: bytes
    messages: list[Finding]
    cached: bool = False


class CrmConversionError(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("; ".join(f"{f.where()}: {f.message}" for f in findings))


# (crm text, file name to report) -> its <configuration>; raises CrmConversionError when crmsh rejects it
CrmConverter = Callable[[str, str], CrmConversion]
