"""`sandbox up --agent-config FILE`: the user's agent settings merged into every sandbox agent's agent.toml,
so production settings ([[notify]], drift_mode, allowed_signers, ...) can be rehearsed. Pure: text in, text
out.

The sandbox's own keys say where this node's agent runs and what it follows; a fragment that sets one is
refused (naming the key and the option that sets it) rather than silently overridden or ignored. Every
other key replaces the sandbox's value; `[[substitute]]` tables are added after the sandbox's own.
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from controller.errors import InputError

# What the sandbox sets per node, and how the user sets it instead.
SANDBOX_KEYS: dict[str, str] = {
    "node_name": "each node's own name",
    "repo_url": "--repo",
    "branch": "--branch",
    "path": "--path",
    "cache_dir": "the node's own state directory",
    "status_file": "the node's own state directory",
    "service_command": "the node's own init (there is no systemd in a node)",
}
APPENDED = ("substitute",)


def parse_fragment(text: str, source: str) -> dict[str, Any]:
    """The fragment's keys; InputError naming `source` (the file) for invalid TOML or a sandbox key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", file=source) from exc
    for key in data:
        if key in SANDBOX_KEYS:
            raise InputError(f"{key} is set by the sandbox ({SANDBOX_KEYS[key]}): remove it from the "
                             "fragment", file=source, element=key)
    return data


def merge(base_toml: str, fragment: str, *, source: str = "--agent-config") -> str:
    """The sandbox's agent.toml with the fragment merged in, as TOML."""
    if not fragment.strip():
        return base_toml
    extra = parse_fragment(fragment, source)
    merged = tomllib.loads(base_toml)
    for key, value in extra.items():
        if key in APPENDED and isinstance(value, list):
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = value
    header = [ln for ln in base_toml.splitlines() if ln.startswith("#")][:1]
    return "\n".join([*header, f"# ... with the keys of {source} merged in", render(merged)])


def render(data: dict[str, Any]) -> str:
    """TOML for settings: top-level values first, then arrays of tables and tables."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) or (isinstance(value, list) and value
                                       and all(isinstance(v, dict) for v in value)):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        for table in value if isinstance(value, list) else [value]:
            lines.append("")
            lines.append(f"[[{_key(key)}]]" if isinstance(value, list) else f"[{_key(key)}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise InputError(f"cannot write a {type(value).__name__} value into agent.toml")
