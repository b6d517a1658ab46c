"""A plan saved to a file (`plan --out`), applied later as it is (`apply --plan`), like Terraform's.

The file holds the decision (with what it was computed against: revision, desired digest, live CIB
version, this node's corosync.conf) and the desired files themselves, so the plan can be reviewed on
one machine and applied on a node; `apply --plan` refuses it, naming what moved, when anything did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from controller.decide import Decision
from controller.desired.state import COROSYNC_FILE, CRM_FILE, POLICY_FILE, XML_FILE
from controller.errors import InputError

FORMAT = "ha-gitops-plan/1"
_FILES = (COROSYNC_FILE, CRM_FILE, XML_FILE, POLICY_FILE)


class PlanSource(BaseModel):
    sha: str | None = None
    author: str | None = None
    message: str | None = None
    signature: str = "not-checked"
    refusal: str | None = None
    folder: str | None = None  # the folder it was made from (--dir)


class SavedPlan(BaseModel):
    format: Literal["ha-gitops-plan/1"] = "ha-gitops-plan/1"
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    node: str
    source: PlanSource
    files: dict[str, str]  # the desired folder's files, as planned
    decision: Decision


def folder_files(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text(encoding="utf-8", errors="surrogateescape")
            for name in _FILES if (folder / name).is_file()}


def write_files(files: dict[str, str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if name not in _FILES:
            raise InputError(f"a saved plan may only hold {', '.join(_FILES)}, not {name!r}")
        (folder / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    return folder


def load_saved_plan(path: Path) -> SavedPlan:
    try:
        return SavedPlan.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read the saved plan: {exc.strerror}", file=str(path)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"not a saved ha-gitops plan ({FORMAT}): {where}: {first['msg']}",
                         file=str(path), element=where or None) from None
