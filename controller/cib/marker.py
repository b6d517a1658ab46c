"""The ha-gitops marker: a cluster_property_set in the CIB that records what the controller did.

Every agent reads it from its own node's CIB, so the cluster's replicated configuration store doubles as
the agents' shared state (no extra database or election): which revision is applied, by which node,
which event, and the operator's suspend/pin switches. The user's desired files never manage it: the
semantic diff ignores it (MARKER_RULE), and it changes only in the same atomic patch as a real change,
or through `ha-gitops suspend|resume|rollback`.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from lxml import etree
from pydantic import BaseModel, ConfigDict

from controller.cib.normalize import IgnoreRule

MARKER_SET_ID = "ha-gitops"
PREFIX = "ha-gitops-"
MARKER_RULE = IgnoreRule(xpath=f"configuration/crm_config/cluster_property_set[@id='{MARKER_SET_ID}']",
                         reason="written by ha-gitops itself")
# The corosync.conf rollout's node attributes (controller/rollout.py): agents' state, not configuration.
NODE_ATTR_RULE = IgnoreRule(
    xpath=f"configuration/nodes/node/instance_attributes/nvpair[starts-with(@name, '{PREFIX}')]",
    reason="ha-gitops rollout state (node attributes)")
# The sandbox's own cluster options (a short dc-deadtime; controller/sandbox/supervisor.py seed_cib): the
# sandbox's, not the configuration under test. The id is ours, so no real cluster has such a set.
SANDBOX_SET_ID = "ha-gitops-sandbox"
SANDBOX_RULE = IgnoreRule(xpath=f"configuration/crm_config/cluster_property_set[@id='{SANDBOX_SET_ID}']",
                          reason="the sandbox's own cluster options")
OWN_RULES = (MARKER_RULE, NODE_ATTR_RULE, SANDBOX_RULE)
# What a write leaves as it is live: everything of OWN_RULES but the marker, which the write carries.
WRITE_RULES = (NODE_ATTR_RULE, SANDBOX_RULE)


class Marker(BaseModel):
    revision: str | None = None      # git sha of the desired state last applied
    digest: str | None = None        # of the effective desired configuration written: a live change
                                     # while git still says the same is drift, not a new revision
    event: str | None = None         # uuid of the audit event of that write (observers record it once)
    kind: str | None = None          # apply | drift-corrected | rollback | auto-rollback
    applied_by: str | None = None    # node whose agent (or CLI) wrote it
    applied_at: str | None = None    # ISO time
    suspended: bool = False          # `ha-gitops suspend`: agents observe but do not write
    pinned: str | None = None        # sha rolled back from: not applied again until a newer commit
    bad: str | None = None           # sha that left the cluster unhealthy and was rolled back automatically
    corosync_bad: str | None = None  # revision whose corosync.conf rollout failed verify and was rolled back
    history: str | None = None       # the last writes, newest first (HISTORY_*, history_entries()): a node
                                     # back from downtime records the ones its trail misses
    history_before: str | None = None  # the event of the write just before the oldest one in history

    def nvpairs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None or value is False:
                continue
            out[PREFIX + name.replace("_", "-")] = "true" if value is True else str(value)
        return out


def read_marker(cib: etree._Element) -> Marker:
    values: dict[str, object] = {}
    # Values are written by us (nvpairs()), and read back the same way.
    for nv in cib.iterfind(f"configuration/crm_config/cluster_property_set[@id='{MARKER_SET_ID}']/nvpair"):
        name = nv.get("name", "")
        if name.startswith(PREFIX):
            values[name[len(PREFIX):].replace("-", "_")] = nv.get("value")
    if "suspended" in values:
        values["suspended"] = values["suspended"] == "true"
    return Marker.model_validate({k: v for k, v in values.items() if k in Marker.model_fields})


def with_marker(cib: etree._Element, marker: Marker) -> etree._Element:
    """A copy of `cib` whose marker set holds exactly `marker`."""
    out = copy.deepcopy(cib)
    crm_config = out.find("configuration/crm_config")
    if crm_config is None:
        configuration = out.find("configuration")
        if configuration is None:
            configuration = etree.SubElement(out, "configuration")
        crm_config = etree.Element("crm_config")
        configuration.insert(0, crm_config)
    for old in crm_config.findall(f"cluster_property_set[@id='{MARKER_SET_ID}']"):
        crm_config.remove(old)
    pairs = marker.nvpairs()
    if pairs:
        pset = etree.SubElement(crm_config, "cluster_property_set", id=MARKER_SET_ID)
        for name, value in pairs.items():
            etree.SubElement(pset, "nvpair", id=f"{MARKER_SET_ID}-{name}", name=name, value=value)
    return out


# ---- the marker's history: the last writes, so a node that was away can tell what it missed
# Bounded twice: by count, and by size, because every write's patch carries the whole value and every
# audit event's configuration holds it (24 entries of a 40-hex revision and 20-character node names are
# about 3.3 KB).
HISTORY_MAX = 24
HISTORY_MAX_BYTES = 4096
_SAFE = ":-._/+@"  # kept as is in a field; everything else (',' ';' '%' spaces) is %-quoted
SWITCH_KINDS = frozenset({"suspend", "resume"})  # entries that change the marker's switches only


class HistoryEntry(BaseModel):
    """One write as the marker history keeps it. `event` is the cluster-wide event id (the uuid the
    writer recorded its audit event under).

    Also what the writer decided without writing configuration, so that every node's trail holds it
    under the same id: a `refused` revision (outcome refused, `codes` its reason codes) and a failed
    `verify` (outcome failure, `codes` its reason). Those carry `outcome`; a write or a switch does not
    (success), and is encoded in six fields as before."""

    model_config = ConfigDict(frozen=True)

    event: str
    kind: str
    revision: str | None = None
    digest: str | None = None  # the first 16 hex digits of the marker's digest
    node: str | None = None
    at: int | None = None  # epoch seconds
    outcome: str | None = None  # None: success (a write or a switch)
    codes: tuple[str, ...] = ()  # why (refusal reason codes, a failure's reason), short

    def encode(self) -> str:
        fields = [self.event, self.kind, self.revision or "", self.digest or "", self.node or "",
                  "" if self.at is None else str(self.at)]
        if self.outcome is not None:
            fields += [self.outcome, "+".join(self.codes)]
        return ",".join(quote(f, safe=_SAFE) for f in fields)

    @classmethod
    def decode(cls, text: str) -> HistoryEntry | None:
        parts = [unquote(p) for p in text.split(",")]
        if len(parts) not in (6, 8) or not parts[0] or not parts[1]:
            return None  # not ours, or cut: ignored rather than trusted
        at = int(parts[5]) if parts[5].isdigit() else None
        outcome, codes = (parts[6] or None, tuple(c for c in parts[7].split("+") if c)) if len(parts) == 8 \
            else (None, ())
        return cls(event=parts[0], kind=parts[1], revision=parts[2] or None, digest=parts[3] or None,
                   node=parts[4] or None, at=at, outcome=outcome, codes=codes)

    @property
    def writes_configuration(self) -> bool:
        """A write of the CIB's configuration (not a switch, a refusal or a verdict)."""
        return self.outcome is None and self.kind not in SWITCH_KINDS

    @property
    def time(self) -> datetime | None:
        return None if self.at is None else datetime.fromtimestamp(self.at, UTC)


def history_entries(marker: Marker) -> list[HistoryEntry]:
    """The marker's history, newest first (an unreadable entry is skipped)."""
    if not marker.history:
        return []
    found = (HistoryEntry.decode(t) for t in marker.history.split(";") if t)
    return [e for e in found if e is not None]


def _epoch(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return None


def entry_of(marker: Marker) -> HistoryEntry | None:
    """The history entry of the write `marker` records (None: it records none)."""
    if not marker.event:
        return None
    return HistoryEntry(event=marker.event, kind=marker.kind or "apply", revision=marker.revision,
                        digest=marker.digest[:16] if marker.digest else None, node=marker.applied_by,
                        at=_epoch(marker.applied_at))


def push_history(marker: Marker, entry: HistoryEntry) -> Marker:
    """`marker` with `entry` first in its history, bounded by HISTORY_MAX entries and HISTORY_MAX_BYTES.

    `history_before` names the write just before the oldest entry kept (what a trail must hold for the
    history to reach back to it); None only before the cluster's first write."""
    old = [e for e in history_entries(marker) if e.event != entry.event]
    before = marker.history_before if old else marker.event if marker.event != entry.event else None
    entries = [entry, *old]
    texts = [e.encode() for e in entries]
    while len(texts) > HISTORY_MAX or (len(texts) > 1 and len(";".join(texts)) > HISTORY_MAX_BYTES):
        texts.pop()
        before = entries[len(texts)].event
    return marker.model_copy(update={"history": ";".join(texts), "history_before": before})


def with_history(old: Marker, new: Marker) -> Marker:
    """The marker a write puts in the CIB: `new`, whose history gains the write when its event is new.

    One place for every writer (cib_writer calls it on each patch), so no write of an event can leave
    the history without it. `new` is made from `old` (the live marker); entries it pushed itself (a
    failed verify announced with the auto-rollback that follows it) are kept, below the write's."""
    if not new.event or new.event == old.event:
        return new
    base = new.model_copy(update={"event": old.event})
    prior = entry_of(old)
    if prior is not None and prior.event not in {e.event for e in history_entries(base)}:
        # Written by an agent that kept no history: the write before this one is still named.
        base = push_history(base, prior)
    entry = entry_of(new)
    assert entry is not None
    return push_history(base, entry).model_copy(update={"event": new.event})


def announce(marker: Marker, entry: HistoryEntry) -> Marker:
    """`marker` with a non-configuration `entry` (a refusal, a failed verify) in its history, unless it
    is there already: the marker's own write stays what it is."""
    if any(e.event == entry.event for e in history_entries(marker)):
        return marker
    return push_history(marker, entry)


def previous_event(marker: Marker, event: str) -> str | None:
    """The event of the write before `event` in the marker's history (None: not known)."""
    entries = history_entries(marker)
    for i, e in enumerate(entries):
        if e.event == event:
            return entries[i + 1].event if i + 1 < len(entries) else marker.history_before
    return None


def previous_write(marker: Marker, event: str) -> str | None:
    """The event of the configuration write before `event` in the marker's history, past the entries
    that wrote none (a switch, a refusal, a failed verify); None: not known."""
    entries = history_entries(marker)
    at = next((i for i, e in enumerate(entries) if e.event == event), None)
    if at is None:
        return None
    for e in entries[at + 1:]:
        if e.writes_configuration:
            return e.event
    return marker.history_before
