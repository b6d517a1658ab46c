"""The hash chain: a canonical serialisation of an event row and its sha256. Pure, no database.

hash = sha256(canonical JSON of {format, id, prev_hash, every content column}). The id is the sequence
number (1, 2, 3, ... without gaps), so a deleted row shows as a gap and a broken link. JSON columns are
hashed as the text stored, so verifying never depends on re-serialising them the same way.

What it proves: rows edited, deleted or cut off the tail by anyone who does not rewrite every later hash
and the head too. There is no secret key, so someone with write access who recomputes the rest of the
chain is not detected; anchoring the head hash elsewhere (journal, git note) closes that, later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

HASH_FORMAT = 2  # format 2 adds event_id (the cluster-wide id); rows of format 1 are checked as they were

# The columns covered by format 1, in no particular order (the serialisation sorts keys). Adding a column
# to the hash means a new format number; rows keep the format they were written with.
HASHED_COLUMNS_V1: tuple[str, ...] = (
    "time", "node", "kind", "outcome", "summary",
    "commit_sha", "commit_author", "commit_message", "commit_signature",
    "cib_version_before", "cib_version_after", "config_before", "config_after", "patch", "diff_json",
    "corosync_before", "corosync_after", "duration", "error", "details_json",
)
HASHED_COLUMNS_V2: tuple[str, ...] = (*HASHED_COLUMNS_V1, "event_id")
HASHED_COLUMNS = {1: HASHED_COLUMNS_V1, 2: HASHED_COLUMNS_V2}


def format_time(value: datetime) -> str:
    """UTC, microseconds, fixed width: what both SQLite and PostgreSQL give back unchanged."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(event_id: int, prev_hash: str, columns: Mapping[str, Any],
                    hash_format: int = HASH_FORMAT) -> bytes:
    names = HASHED_COLUMNS.get(hash_format)
    if names is None:
        raise ValueError(f"unknown hash format {hash_format}")
    doc: dict[str, Any] = {"format": hash_format, "id": int(event_id), "prev_hash": prev_hash}
    for name in names:
        value = columns[name]
        if name == "time":
            value = format_time(value)
        elif name == "duration" and value is not None:
            value = float(value)
        doc[name] = value
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def event_hash(event_id: int, prev_hash: str, columns: Mapping[str, Any],
               hash_format: int = HASH_FORMAT) -> str:
    return hashlib.sha256(canonical_bytes(event_id, prev_hash, columns, hash_format)).hexdigest()


def dump_json(value: Any) -> str:
    """The one way JSON columns are written (stable, so equal values give equal text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
