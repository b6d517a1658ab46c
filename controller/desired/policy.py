"""cluster.toml: the cluster's policy, validated strictly (an unknown key is an error naming it).

Sections are added as the controller grows (maintenance windows, disruption policy, ...): each is
a pydantic model with ``extra="forbid"`` hung off ``ClusterPolicy``.

``ignore`` holds the CIB engine's own ``IgnoreRule`` (controller.cib.normalize: xpath relative to
/cib, optional attribute, reason), so what the policy file accepts is exactly what the diff uses.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.cib.normalize import IgnoreRule
from controller.desired.policy_sections import (
    DisruptionPolicy,
    MaintenanceWindow,
    RolloutPolicy,
    SecretsPolicy,
    SettlePolicy,
)
from controller.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterPolicy(_Strict):
    ignore: list[IgnoreRule] = Field(default_factory=list)
    # controller.desired.policy_sections: [[maintenance_window]], [disruption], [settle], [rollout]
    maintenance_window: list[MaintenanceWindow] = Field(default_factory=list)
    disruption: DisruptionPolicy = Field(default_factory=DisruptionPolicy)
    settle: SettlePolicy = Field(default_factory=SettlePolicy)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    secrets: SecretsPolicy = Field(default_factory=SecretsPolicy)


def _key_line(text: str, key: str) -> int | None:
    """Line of the first occurrence of key (a bare TOML key or table header)."""
    pattern = re.compile(rf"^\s*(\[+\s*)?[\"']?{re.escape(key)}[\"']?\s*(=|\]|\.)", re.M)
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def parse_policy(text: str, source: str = "cluster.toml") -> ClusterPolicy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        raise InputError(f"invalid TOML: {exc}", file=source, line=int(m.group(1)) if m else None) from exc
    try:
        return ClusterPolicy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                       for i, p in enumerate(loc))
        last_name = next((p for p in reversed(loc) if isinstance(p, str)), None)
        line = _key_line(text, last_name) if last_name else None
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {path!r}"
        elif err["type"] == "missing":
            msg = f"missing key {path!r}"
            line = _key_line(text, str(loc[0])) if loc else None
        else:
            msg = f"{path}: {err['msg']}"
        more = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise InputError(msg + more, file=source, line=line, element=path) from None


def load_policy(path: Path) -> ClusterPolicy:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    return parse_policy(text, source=str(path))
