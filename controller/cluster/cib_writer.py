"""Writing a desired configuration into the live CIB: one atomic, version-checked patch, verified.

The patch carries the live version just read as its source, so the CIB refuses it if anything changed
in between ("Update was older than existing configuration", exit 103): then we re-read, re-diff and
retry, a bounded number of times. After every patch we re-read and verify, because a patch whose source
is ahead of the live CIB returns 0 and applies nothing.

Every patch, the first try and each retry, marker-only writes too, is preceded by a guard (WriteGuard):
this node must still be the quorate DC (an agent's write), or the cluster still quorate (an operator's
verb, from any node). A pass checks quorum when it starts, but a DC cut off from the others keeps a
writable CIB: its patch, made after its own "Quorum lost", can win the merge after heal and overwrite
what the majority's new DC applied meanwhile. A write the guard stops raises LostLeadership and nothing
is written, not even the marker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, Field

from controller.cib.diff import build_live_patch
from controller.cib.document import CibVersion
from controller.cib.marker import OWN_RULES, WRITE_RULES, Marker, read_marker, with_history, with_marker
from controller.cib.normalize import IgnoreRule
from controller.cib.render import ObjectChange
from controller.cib.xml import to_bytes
from controller.cluster.adapter import Leadership, LiveCluster
from controller.errors import CommandError, HaGitopsError

CIB_OLDER_RC = 103  # pcmk_rc_old_data: the patch's source version is not the live one


class PatchRejected(HaGitopsError):
    """The CIB refused the patch for a reason other than a version race (schema, permissions)."""

    def __init__(self, message: str, patch_xml: str) -> None:
        super().__init__(message)
        self.patch_xml = patch_xml


class ConvergeFailed(HaGitopsError):
    pass


SkipReason = Literal["LostQuorum", "NotWriter"]  # controller.failures.FailureReason values


class LostLeadership(HaGitopsError):
    """A write skipped by the guard: just before the patch, this node was not the quorate DC any more
    (or, for an operator's verb, the cluster not quorate). Nothing was written."""

    def __init__(self, message: str, *, reason: SkipReason, attempt: int, patch_xml: str = "",
                 seen: Leadership | None = None) -> None:
        super().__init__(message)
        self.reason: SkipReason = reason
        self.attempt = attempt
        self.patch_xml = patch_xml
        self.seen = seen

    def details(self) -> dict[str, object]:
        """For the audit event: what the guard saw, so the trail says why the write was not made."""
        return {"skipped": True, "attempt": self.attempt,
                "leadership": self.seen.model_dump() if self.seen is not None else None}


class LandedLost(LostLeadership):
    """A write that landed, but the guard asked right after it said this node had lost the right to
    write meanwhile (a patch held across a membership change): written, maybe only in a minority
    partition; never a success."""

    def __init__(self, message: str, *, version_after: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.version_after = version_after

    def details(self) -> dict[str, object]:
        return {**super().details(), "skipped": False,
                "lost_race": {"reason": self.reason, "message": str(self)}}


class WriteGuard(BaseModel):
    """Who may write. `node` set: only while that node (where the tools run) is the DC of a quorate
    partition, an agent's write. `node` None: only while the cluster is quorate, an operator's verb
    (`apply --once`, `rollback`, `suspend`), which may be run on any node."""

    node: str | None = None

    def check(self, cluster: LiveCluster, *, attempt: int = 1, patch_xml: str = "") -> Leadership:
        """The leadership seen now; raises LostLeadership when this write may not be made."""
        try:
            seen = cluster.leadership(need_dc=self.node is not None)
        except HaGitopsError as exc:
            # Fail closed: a write we cannot prove quorate is not made (corosync down, a tool hung).
            raise LostLeadership(f"quorum could not be confirmed before the write: {exc}",
                                 reason="LostQuorum", attempt=attempt, patch_xml=patch_xml) from exc
        if not seen.has_quorum:
            where = f"{self.node} " if self.node else "this node "
            raise LostLeadership(f"{where}is in a partition without quorum (votequorum quorate: "
                                 f"{'yes' if seen.quorate else 'no'}, CIB have-quorum: "
                                 f"{_yes_no(seen.cib_quorate)}); the write was skipped", reason="LostQuorum",
                                 attempt=attempt, patch_xml=patch_xml, seen=seen)
        if self.node is not None and not seen.is_dc:
            raise LostLeadership(f"{self.node} (node id {seen.node_id}) is not the DC any more (the DC is "
                                 f"node id {seen.dc_id or 'none'}); the write was skipped",
                                 reason="NotWriter", attempt=attempt, patch_xml=patch_xml, seen=seen)
        return seen


QUORUM_ONLY = WriteGuard()  # the default: no write of ours ever goes into a partition without quorum


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


class Conflict(BaseModel):
    attempt: int
    reason: str
    version_seen: str
    updated_by: dict[str, str | None] = Field(default_factory=dict)


class WriteOutcome(BaseModel):
    changed: bool
    attempts: int
    conflicts: list[Conflict] = Field(default_factory=list)
    version_before: str
    version_after: str
    patch_xml: str = ""
    config_before: str  # the live <configuration> before the write (for the audit trail and rollback)
    config_after: str
    objects: list[ObjectChange] = Field(default_factory=list)
    updated_by_before: dict[str, str | None] = Field(default_factory=dict)
    marker_before: Marker = Field(default_factory=Marker)
    marker_after: Marker = Field(default_factory=Marker)  # what the write left (its history names the
                                                          # write before it)
    duration: float = 0.0
    guard_seconds: float = 0.0  # what the leadership checks before the patches cost, together
    # Set when the guard, asked again right after the patch, said this node had lost the right to write
    # meanwhile (reason LostQuorum / NotWriter): the write landed, but maybe only in a minority partition.
    lost_race: dict[str, object] | None = None


def cib_version(cib: etree._Element) -> str:
    """"admin_epoch.epoch.num_updates", as the audit trail records versions."""
    v = CibVersion.of(cib)
    return f"{v.admin_epoch}.{v.epoch}.{v.num_updates}"


def configuration_text(cib: etree._Element) -> str:
    conf = cib.find("configuration")
    return to_bytes(conf).decode() if conf is not None else ""


def updated_by(cib: etree._Element) -> dict[str, str | None]:
    """Who wrote the CIB last, as Pacemaker records it on every write."""
    return {k: cib.get(k) for k in ("update-origin", "update-client", "update-user", "cib-last-written")}


def pending_changes(live: etree._Element, desired: etree._Element,
                    ignore: Sequence[IgnoreRule] = ()) -> list[ObjectChange]:
    """What a write would change, ignoring our own marker (pure)."""
    d = build_live_patch(live, desired, ignore=[*ignore, *OWN_RULES])
    return d.objects() if d.changed else []


def write_configuration(cluster: LiveCluster, desired: etree._Element, *,
                        ignore: Sequence[IgnoreRule] = (),
                        marker: Callable[[Marker], Marker] | None = None,
                        max_attempts: int = 5,
                        before_patch: Callable[[int], None] | None = None,
                        after_patch: Callable[[int], None] | None = None,
                        guard: WriteGuard = QUORUM_ONLY) -> WriteOutcome:
    """Make the live configuration mean what `desired` (a <cib>) means; returns what was done.

    `marker(live_marker)` gives the marker to write in the same patch (only when something changes).
    `before_patch(attempt)` is a test hook point between reading and patching (a race window);
    `after_patch(attempt)` one between a patch that landed and the guard asked again.
    `guard` is checked right before every patch (LostLeadership when it fails: nothing written).
    """
    started = time.monotonic()
    guarded = 0.0
    conflicts: list[Conflict] = []
    first: etree._Element | None = None
    for attempt in range(1, max_attempts + 1):
        live = cluster.read_cib()
        if first is None:
            first = live
        check = build_live_patch(live, desired, ignore=[*ignore, *OWN_RULES])
        if not check.changed:
            # Nothing to write (or someone else already wrote the same meaning meanwhile).
            return _outcome(first, live, changed=False, attempts=attempt, conflicts=conflicts,
                            started=started, guarded=guarded)
        wanted = desired
        live_marker = read_marker(live)
        if marker is not None:
            wanted = with_marker(desired, with_history(live_marker, marker(live_marker)))
        patch = build_live_patch(live, wanted, ignore=[*ignore, *WRITE_RULES])
        patch_xml = patch.patch_xml()
        if before_patch is not None:
            before_patch(attempt)
        # Last thing before the patch, so that nothing (a pause, a slow diff) sits between check and write.
        guarded += guard.check(cluster, attempt=attempt, patch_xml=patch_xml).seconds
        try:
            cluster.patch(patch_xml)
        except CommandError as exc:
            if exc.returncode == CIB_OLDER_RC:
                now = cluster.read_cib()
                conflicts.append(Conflict(attempt=attempt, reason="CIB changed between read and patch",
                                          version_seen=cib_version(now), updated_by=updated_by(now)))
                continue
            raise PatchRejected(f"the CIB refused the patch: {exc.stderr.strip() or exc}", patch_xml) from exc
        after = cluster.read_cib()
        verify = build_live_patch(after, desired, ignore=[*ignore, *OWN_RULES])
        if verify.changed:
            conflicts.append(Conflict(attempt=attempt, reason="patch applied but live still differs "
                                      "(a concurrent write, or a source version ahead of live)",
                                      version_seen=cib_version(after), updated_by=updated_by(after)))
            continue
        out = _outcome(first, after, changed=True, attempts=attempt, conflicts=conflicts, started=started,
                       guarded=guarded)
        out.patch_xml = patch_xml
        out.objects = check.objects()
        if after_patch is not None:
            after_patch(attempt)
        try:
            # A patch can be held across a membership change (the CIB's messages wait for the new
            # membership) and land after this partition lost quorum: the trail must say so.
            guard.check(cluster, attempt=attempt, patch_xml=patch_xml)
        except LostLeadership as lost:
            out.lost_race = {"reason": lost.reason, "message": str(lost), **lost.details()}
        return out
    raise ConvergeFailed(f"live CIB still differs after {max_attempts} attempts: "
                         + "; ".join(f"#{c.attempt}: {c.reason} (now {c.version_seen}, by "
                                     f"{c.updated_by.get('update-client')}@{c.updated_by.get('update-origin')})"
                                     for c in conflicts))


def _outcome(first: etree._Element, last: etree._Element, *, changed: bool, attempts: int,
             conflicts: list[Conflict], started: float, guarded: float) -> WriteOutcome:
    return WriteOutcome(changed=changed, attempts=attempts, conflicts=conflicts,
                        version_before=cib_version(first), version_after=cib_version(last),
                        config_before=configuration_text(first), config_after=configuration_text(last),
                        updated_by_before=updated_by(first), marker_before=read_marker(first),
                        marker_after=read_marker(last),
                        duration=round(time.monotonic() - started, 3), guard_seconds=round(guarded, 4))


def write_marker_only(cluster: LiveCluster, marker: Callable[[Marker], Marker], *,
                      max_attempts: int = 5, guard: WriteGuard = QUORUM_ONLY) -> Marker:
    """Change only the marker (suspend, resume, pin, a bad mark), version-checked and guarded like any
    other write: the marker is the agents' shared state, a stale one from a minority partition would
    win the merge just as a configuration would."""
    for attempt in range(1, max_attempts + 1):
        live = cluster.read_cib()
        old = read_marker(live)
        new = with_history(old, marker(old))
        patch = build_live_patch(live, with_marker(live, new), semantic=False)
        if not patch.changed:
            return new
        guard.check(cluster, attempt=attempt, patch_xml=patch.patch_xml())
        try:
            cluster.patch(patch.patch_xml())
        except CommandError as exc:
            if exc.returncode == CIB_OLDER_RC:
                continue
            raise PatchRejected(f"the CIB refused the marker update: {exc.stderr.strip() or exc}",
                                patch.patch_xml()) from exc
        after = cluster.read_cib()
        if read_marker(after) == new:
            try:  # asked again: a marker write can be held across a membership change too
                guard.check(cluster, attempt=attempt, patch_xml=patch.patch_xml())
            except LostLeadership as lost:
                raise LandedLost(f"the marker update landed, but {lost}", reason=lost.reason, attempt=attempt,
                                 patch_xml=patch.patch_xml(), seen=lost.seen,
                                 version_after=cib_version(after)) from lost
            return new
    raise ConvergeFailed(f"could not update the ha-gitops marker after {max_attempts} attempts")


TAKEOVER_EPOCH_STEP = 2


def claim_generation(cluster: LiveCluster, *, guard: WriteGuard) -> tuple[str, str]:
    """A new writer raises the CIB's epoch by TAKEOVER_EPOCH_STEP: (the version before, the
    admin_epoch.epoch set).

    When partitions rejoin, Pacemaker keeps the CIB with the highest (admin_epoch, epoch, num_updates).
    A partition that lost quorum can still land one write (a patch held across the membership change:
    the guard before it passed), one epoch ahead of where the partitions split. Without this, the
    majority's first write after the split only ties it, and the tie can go to the minority: its older
    revision comes back after heal. Two epochs ahead, the majority's configuration always wins.
    """
    before = CibVersion.of(cluster.read_cib_head(), source="the live <cib>")
    guard.check(cluster)
    cluster.set_epoch(before.epoch + TAKEOVER_EPOCH_STEP)
    return (f"{before.admin_epoch}.{before.epoch}.{before.num_updates}",
            f"{before.admin_epoch}.{before.epoch + TAKEOVER_EPOCH_STEP}")
