"""A validation finding: what is wrong, how bad, and where (file + line and/or element id)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from controller.errors import InputError

Severity = Literal["error", "warning"]


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity
    file: str
    line: int | None = None
    element: str | None = None
    message: str

    def where(self) -> str:
        out = self.file
        if self.line is not None:
            out += f":{self.line}"
        if self.element:
            out += f" ({self.element})"
        return out

    @classmethod
    def from_error(cls, exc: InputError, default_file: str) -> Finding:
        return cls(severity="error", file=exc.file or default_file, line=exc.line, element=exc.element,
                   message=exc.message)


class DesiredStateError(InputError):
    """The desired state could not be loaded; carries every error found on the way."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        first = next((f for f in findings if f.severity == "error"), findings[0])
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(first.message + more, file=first.file, line=first.line, element=first.element)
