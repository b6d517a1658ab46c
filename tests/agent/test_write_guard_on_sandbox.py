"""No write without quorum (issue 10, item 1), on a real cluster: the DC is cut off from the others
between reading the CIB and patching it.

The DC's agent is paused at `before-patch` (controller/faults.py) in the pass a push starts; during the
pause its node is cut (`sandbox cut`: the cable unplugged, the node alive). Its pass wakes in a
partition of one, without quorum. Before the guard, that patch went into the isolated CIB and, after
heal, could win the merge over what the majority's new DC had applied meanwhile: the commit was lost.
Now the isolated DC writes nothing and says why in its audit trail (and an operator's `suspend` there
is refused), and the majority's new DC applies the commit, which is what every node holds after heal.

Fencing is off in this cluster (stonith-enabled=false): with it, the majority fences the cut node and
its agent dies with it before its pass wakes, so the race this test is about never runs (the soak saw
it anyway, in the seconds before a fence). Without fencing, the isolated DC lives on, as it would when a
fence fails or takes long.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import Marker, read_marker
from controller.errors import HaGitopsError
from controller.sandbox.manager import Sandbox
from tests.agentslib import (
    agent_status,
    agents_sandbox,
    audit,
    cli,
    dc,
    recorded,
    reference_files,
    set_fault,
    wait_paused,
)
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "kamailio"
CRM = f"{FOLDER}/cib.crm"
NODES = ["kamailio01", "kamailio02", "kamailio03"]
AGENT_TOML = "/etc/ha-gitops/agent.toml"
PAUSE = 20.0  # seconds the DC's pass waits between reading and patching: longer than quorum takes to go


def no_fencing() -> dict[str, str]:
    crm = reference_files(FOLDER)[CRM]
    assert "stonith-enabled=true" in crm
    return {CRM: crm.replace("stonith-enabled=true", "stonith-enabled=false")}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("guard", FOLDER, extra=no_fencing(), message="kamailio, fencing off") as e:
        yield e




def stickiness(sb: Sandbox, node: str) -> str:
    r = sb.exec(node, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                       "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


def quorate(sb: Sandbox, node: str) -> bool:
    return sb.exec(node, ["corosync-quorumtool", "-s"]).returncode == 0


def new_dc(sb: Sandbox, majority: list[str]) -> str | None:
    try:
        d = sb.cluster(majority[0]).status().dc
    except HaGitopsError:  # crm_mon in the middle of the election
        return None
    return d if d in majority else None


def marker_at(sb: Sandbox, node: str, sha: str) -> Marker | None:
    m = read_marker(sb.cluster(node).read_cib())
    return m if m.revision == sha else None




def settled(sb: Sandbox, repo: GitRepo) -> None:
    """The initial sync done and verified by the DC's agent, and the cluster idle: the cut below must
    race the push's write, not the start-up's transitions."""
    head = repo.head()
    wait_for(lambda: (a := agent_status(sb, dc(sb))).get("source_revision") == head
             and a.get("outcome") in ("no-change", "applied"), 90, "the initial sync verified")
    sb.exec(dc(sb), ["crm_resource", "--wait", "--timeout=60s"], timeout=90, check=True)


def test_a_dc_cut_off_between_read_and_patch_writes_nothing_and_the_commit_is_not_lost(
        cluster: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = cluster
    settled(sb, repo)
    old = dc(sb)
    majority = [n for n in NODES if n != old]
    before = read_marker(sb.cluster(old).read_cib()).revision
    crm = repo.read(CRM)
    assert stickiness(sb, old) == "100"
    set_fault(sb, {"before-patch": PAUSE}, old)
    cut_at: float | None = None
    try:
        sha = repo.commit({CRM: crm.replace("resource-stickiness=100", "resource-stickiness=150")}, "150")
        pushed = time.monotonic()
        wait_paused(sb, old, "before-patch", 30)  # the DC's pass has read the CIB and is held
        sb.cut(old)
        cut_at = time.monotonic()
        wait_for(lambda: not quorate(sb, old), 30, f"{old} to lose quorum")
        quorum_lost = time.monotonic() - cut_at

        # The majority elects a new DC, whose agent applies the commit.
        elected = wait_for(lambda: new_dc(sb, majority), 60, "a new DC in the majority")
        applied = wait_for(lambda: marker_at(sb, elected, sha), 90, "the commit applied in the majority")
        applied_after = time.monotonic() - pushed
        new = applied.applied_by or ""  # the majority's DC when it wrote (an election may have moved it)
        assert new in majority and stickiness(sb, elected) == "150", (applied, elected)

        # The isolated DC's pass woke without quorum: the write is skipped and recorded as such.
        skipped = wait_for(lambda: next((e for e in audit(sb, old) if e["kind"] == "error"
                                         and e["details"].get("reason") == "LostQuorum"), None),
                           PAUSE + 30, "the skipped write in the isolated DC's trail")
        skipped_after = time.monotonic() - pushed
        set_fault(sb, {}, old)
        assert skipped["details"]["stage"] == "write" and skipped["details"]["skipped"]
        assert skipped["commit"]["sha"] == sha and skipped["outcome"] == "failure"
        assert skipped["summary"].startswith(f"apply of {sha[:12]} skipped: this node's partition had lost "
                                             "quorum"), skipped["summary"]
        seen = skipped["details"]["leadership"]
        assert seen["quorate"] is False  # votequorum's answer, the moment before the patch
        assert not skipped.get("patch")
        # Nothing reached its CIB: neither the change nor the marker.
        isolated = sb.cluster(old).read_cib()
        assert stickiness(sb, old) == "100" and read_marker(isolated).revision == before
        assert not any(e["kind"] == "apply" and e["outcome"] == "success" and e["node"] == old
                       and (e["commit"] or {}).get("sha") == sha for e in audit(sb, old))
        failure = wait_for(lambda: agent_status(sb, old).get("last_failure"), 30, "the failure in status")
        assert (failure["stage"], failure["reason"]) == ("write", "LostQuorum")
        _, out, _ = cli(sb, old, "status", "--config", AGENT_TOML)
        assert "last failure: write LostQuorum" in out, out
        # An operator's verb on the cut-off node needs quorum too: `suspend` writes nothing there.
        code, _, err = cli(sb, old, "suspend", "--config", AGENT_TOML)
        assert code == 2 and "partition without quorum" in err, err
        assert not read_marker(sb.cluster(old).read_cib()).suspended
        # ... and the refusal is in its trail, not only on the operator's screen.
        refused = next(e for e in audit(sb, old) if e["kind"] == "suspend")
        assert refused["outcome"] == "refused" and refused["details"]["reason"] == "LostQuorum", refused
        assert f"audit event {refused['id']}" in err, err
    finally:
        set_fault(sb, {}, old)
        sb.heal(old)
    healed = time.monotonic()

    # After heal the cluster holds the majority's configuration: the commit, applied by the new DC.
    def converged() -> bool:
        cibs = [sb.cluster(n).read_cib() for n in NODES]
        return all(read_marker(c).revision == sha and read_marker(c).applied_by == new for c in cibs) \
            and all(stickiness(sb, n) == "150" for n in NODES) \
            and all(sb.cluster(n).status().quorate for n in NODES)

    wait_for(converged, 120, "every node on the commit the new DC applied")
    converged_after = time.monotonic() - healed
    # The once-isolated node's trail has the new DC's apply, observed: the history is whole there too.
    observed = recorded(sb, old, lambda e: e["kind"] == "apply" and e["node"] == new
                        and (e["commit"] or {}).get("sha") == sha,
                        "the new DC's apply recorded on the once-isolated node", 60)
    assert observed["details"]["observed_by"] == old
    # What the guard cost the new DC's write (votequorum + the <cib> element, right before its patch).
    write = recorded(sb, new, lambda e: e["kind"] == "apply" and e["node"] == new
                     and (e["commit"] or {}).get("sha") == sha, "the new DC's apply event")
    guard = write["details"]["guard_seconds"]
    assert guard > 0, guard  # its cost is measured (bench, README), not asserted: machines are noisy
    print(f"\ncut -> {old} lost quorum: {quorum_lost:.1f}s; push -> applied by {new}: {applied_after:.1f}s; "
          f"push -> skipped write recorded on {old}: {skipped_after:.1f}s; heal -> converged: "
          f"{converged_after:.1f}s; guard before the new DC's patch: {guard * 1000:.1f} ms")


# ------------------------------------------------------------------ a write that lands, then quorum goes
def test_a_patch_that_lands_as_quorum_goes_is_recorded_as_a_lost_race_not_a_success(
        cluster: tuple[Sandbox, GitRepo]) -> None:
    """The soak's last quorum fault: a patch held across a membership change lands 32 ms after its own
    `Quorum lost`. The guard before the patch cannot see that coming; asked again right after it, it
    does: the write is recorded as lost (reason LostQuorum), not verified, and the majority decides."""
    sb, repo = cluster
    settled(sb, repo)
    old = dc(sb)
    majority = [n for n in NODES if n != old]
    value = str(int(stickiness(sb, old)) + 11)
    set_fault(sb, {"after-patch": PAUSE}, old)
    try:
        sha = repo.commit({CRM: re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}",
                                       repo.read(CRM))}, f"stickiness {value} (the DC is cut as it lands)")
        wait_for(lambda: marker_at(sb, old, sha), 30, "the DC's patch landing")
        sb.cut(old)
        wait_for(lambda: not quorate(sb, old), 30, f"{old} to lose quorum")
        lost = recorded(sb, old, lambda e: e["kind"] == "apply" and (e["commit"] or {}).get("sha") == sha,
                        "the DC's record of its write", PAUSE + 30)
        set_fault(sb, {}, old)
        assert lost["outcome"] == "failure", lost["summary"]
        assert lost["details"]["reason"] == lost["details"]["lost_race"]["reason"] == "LostQuorum"
        assert "lost the race" in lost["summary"] and lost["cib_version_after"]  # it did land
        assert not any(e["kind"] == "verify" and (e["commit"] or {}).get("sha") == sha
                       for e in audit(sb, old))
        failure = wait_for(lambda: agent_status(sb, old).get("last_failure"), 30, "the failure in status")
        assert (failure["stage"], failure["reason"]) == ("write", "LostQuorum")
    finally:
        set_fault(sb, {}, old)
        sb.heal(old)
    # The majority's DC holds (or applies) the commit; after heal every node is on it.
    wait_for(lambda: all(stickiness(sb, n) == value and (m := marker_at(sb, n, sha)) is not None
                         and m.applied_by in [*majority, old] for n in NODES)
             and all(sb.cluster(n).status().quorate for n in NODES), 120, "every node on the commit")


def test_a_write_held_in_a_cut_partition_never_wins_the_rejoin(cluster: tuple[Sandbox, GitRepo]) -> None:
    """The soak's stale revision: the DC is cut while its patch is in flight; the patch is held until
    corosync sees the cut, then lands in the DC's partition of one. The majority's new DC applies a newer
    commit. Before, both CIBs were one epoch ahead and the tie at heal could go to the minority: the older
    revision came back on every node. Now the new writer claims two epochs on takeover, so the majority's
    configuration wins, and the minority's write is recorded as lost (or was skipped), never a success."""
    sb, repo = cluster
    settled(sb, repo)
    old = dc(sb)
    majority = [n for n in NODES if n != old]
    base = int(stickiness(sb, old))
    older, newer = str(base + 21), str(base + 22)

    def commit(value: str) -> str:
        return repo.commit({CRM: re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}",
                                        repo.read(CRM))}, f"stickiness {value}")

    try:
        sb.cut(old)
        x = commit(older)  # the cut DC's agent takes it at once: its guard still sees quorum
        time.sleep(4)
        y = commit(newer)
        elected = wait_for(lambda: new_dc(sb, majority), 60, "a new DC in the majority")
        wait_for(lambda: marker_at(sb, elected, y), 90, "the newer commit applied in the majority")
        mine = wait_for(lambda: [e for e in audit(sb, old) if (e["commit"] or {}).get("sha") == x
                                 and e["kind"] in ("apply", "error")] or None, 60, "the cut DC's record")
        assert not any(e["outcome"] == "success" for e in mine), [e["summary"] for e in mine]
    finally:
        sb.heal(old)
    seen: dict[str, list[str]] = {n: [] for n in NODES}

    def converged() -> bool:
        for n in NODES:
            try:
                rev = read_marker(sb.cluster(n).read_cib()).revision or ""
            except HaGitopsError:
                return False
            if not seen[n] or seen[n][-1] != rev:
                seen[n].append(rev)
        return all(s and s[-1] == y for s in seen.values()) and all(stickiness(sb, n) == newer for n in NODES)

    wait_for(converged, 120, "every node on the newer commit")
    time.sleep(5)
    assert converged(), seen
    # No node went back to the older revision once the newer one was there.
    for n, revs in seen.items():
        assert x not in revs[revs.index(y):] if y in revs else True, (n, revs)


# ------------------------------------------------------------------ the audit store failing (item 5)
def trail_files(sb: Sandbox, node: str) -> list[str]:
    db = sb.layout.node_dir(node) / "var-lib-ha-gitops" / "audit.db"
    return [str(db), f"{db}-wal"]


def node_status(sb: Sandbox, node: str) -> object:
    return next(n for n in sb.status().nodes if n.name == node)


def test_an_unwritable_audit_trail_stops_writes_not_the_agent_and_loses_nothing(
        cluster: tuple[Sandbox, GitRepo]) -> None:
    """The soak's fault: an immutable audit database made the agent exit, sometimes after applying. Now
    the DC's agent stays up, writes nothing it cannot record, says so, and once the trail works again
    applies the commit and records it whole (configuration before and after, the patch)."""
    sb, repo = cluster
    settled(sb, repo)
    writer = dc(sb)
    before_restarts = node_status(sb, writer).agent_restarts  # type: ignore[attr-defined]
    value = str(int(stickiness(sb, writer)) + 7)
    frozen = trail_files(sb, writer)
    subprocess.run(["chattr", "+i", *frozen], check=True, timeout=30)  # every write: an I/O error
    try:
        sha = repo.commit({CRM: re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}",
                                       repo.read(CRM))}, f"stickiness {value} (trail frozen)")
        # The writer's passes (push, then every poll) find the trail unwritable: nothing reaches the CIB.
        log = sb.layout.node_dir(writer) / "logs" / "agent.out"
        wait_for(lambda: "the audit trail cannot be written" in log.read_text(errors="replace"), 60,
                 "the writer noticing its trail is unwritable")
        time.sleep(12)  # two more polls
        assert stickiness(sb, writer) != value
        assert read_marker(sb.cluster(writer).read_cib()).revision != sha
        st = node_status(sb, writer)
        assert st.agent and st.agent_restarts == before_restarts  # type: ignore[attr-defined]
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if "the audit trail cannot be written" in ln]
        assert len(lines) <= 3, lines[-5:]  # logged once (plus a count), not once per pass
        _, out, _ = cli(sb, writer, "status", "--config", AGENT_TOML)
        assert "audit trail cannot be written" in out, out
    finally:
        subprocess.run(["chattr", "-i", *frozen], check=False, timeout=30)
    wait_for(lambda: stickiness(sb, writer) == value, 60, "the commit applied once the trail works")
    write = wait_for(lambda: next((e for e in audit(sb, writer) if e["kind"] == "apply"
                                   and e["outcome"] == "success" and e["node"] == writer
                                   and (e["commit"] or {}).get("sha") == sha), None), 30, "the apply event")
    code, out, err = cli(sb, writer, "audit", "show", str(write["id"]), "--format", "json")
    assert code == 0, err
    full = json.loads(out)
    assert full["config_before"] and full["config_after"] and full["patch"], sorted(full)
    assert f"resource-stickiness\" value=\"{value}" in full["config_after"]
    assert cli(sb, writer, "audit", "verify")[0] == 0
