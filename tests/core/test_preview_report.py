"""The preview's judgement of what the sandbox did with the head, and its three renderings (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.decide import Decision
from controller.errors import InputError
from controller.impact import Impact, ResourceImpact
from controller.observed import ClusterStatus, FailedAction, NodeState, ResourceState
from controller.plan import Plan
from controller.preview import (
    Fence,
    Observation,
    PreviewEvent,
    PreviewReport,
    build_report,
    observed_actions,
    report_json,
    report_markdown,
    report_text,
    snapshot_base_files,
)
from controller.snapshot import Snapshot, SnapshotSettings

BASE, HEAD, OTHER = "a" * 40, "b" * 40, "c" * 40
T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
NODES = [NodeState(name=f"kamailio0{i}", id=str(i), online=True, standby=False, is_dc=i == 1)
         for i in (1, 2, 3)]


def status(*resources: ResourceState, failed: list[FailedAction] | None = None,
           quorate: bool = True) -> ClusterStatus:
    return ClusterStatus(dc="kamailio01", quorate=quorate, nodes=NODES, resources=list(resources),
                         failed_actions=failed or [])


def rsc(rid: str, role: str = "Started", node: str | None = "kamailio01", **kw: Any) -> ResourceState:
    return ResourceState(id=rid, agent="ocf:pacemaker:Dummy", role=role, active=role == "Started",
                         nodes=[node] if node else [], **kw)


IP = rsc("IP-HA-01")
FAILED_START = FailedAction(op_key="DUMMY-BAD_start_0", node="kamailio02", exitstatus="error",
                            exitreason="state dir missing", call=12)


def event(kind: str, outcome: str = "success", commit: str | None = HEAD, seconds: float = 1.0,
          summary: str = "", **details: Any) -> PreviewEvent:
    return PreviewEvent(id=int(seconds * 10), event_id=f"{kind}-{seconds}", node="kamailio01", kind=kind,
                        outcome=outcome, time=T0 + timedelta(seconds=seconds), summary=summary or kind,
                        commit=commit, details=details)


def decision(verdict: str = "apply", impact: Impact | None = None) -> Decision:
    return Decision.model_validate({"verdict": verdict, "plan": Plan(cluster="kamailio", revision=HEAD,
                                                                     impact=impact).model_dump()})


def observe(events: list[PreviewEvent], *, after: ClusterStatus | None = None,
            samples: list[ClusterStatus] | None = None, **kw: Any) -> Observation:
    fields: dict[str, Any] = {"base": "desired/kamailio", "head": "pr", "base_revision": BASE,
                              "head_revision": HEAD, "committed_at": T0, "dc": "kamailio01",
                              "before": status(IP), "samples": samples or [], "after": after or status(IP),
                              "events": events, "timings": {"sandbox_up": 6.0}, "crm_mon": "Cluster Summary:"}
    return Observation(**(fields | kw))


def test_a_clean_change_is_applied_and_verified_exit_1_as_planned() -> None:
    r = build_report(decision(), observe([event("apply", timings={"write": 0.2, "verify": 0.1},
                                                seconds=0.8)]))
    assert (r.outcome, r.exit_code, r.plan_exit_code, r.agrees) == ("applied", 1, 1, True)
    assert r.timings["commit_to_apply"] == 0.8
    assert r.agent_timings == {"write": 0.2, "verify": 0.1}
    assert r.verify.startswith("healthy")
    text = report_text(r)
    assert "Outcome: applied" in text and "the sandbox agrees" in text and "exit 1" in text
    md = report_markdown(r)
    assert md.startswith("### ha-gitops preview: `pr` on `desired/kamailio`")
    assert "✅ **applied**" in md and "<summary>The plan</summary>" in md and "Cluster Summary:" in md


def test_a_head_rolled_back_by_the_agent_is_exit_3_and_differs_from_the_plan() -> None:
    events = [event("apply", seconds=1), event("verify", "failure", seconds=5, summary="cluster unhealthy "
                                                "after apply: DUMMY-BAD_start_0 failed on kamailio02"),
              event("auto-rollback", seconds=6, bad_revision=HEAD)]
    samples = [status(IP, rsc("DUMMY-BAD", "Stopped", None)),
               status(IP, rsc("DUMMY-BAD", "Stopped", None), failed=[FAILED_START])]
    r = build_report(decision(), observe(events, samples=samples, after=status(IP, failed=[FAILED_START])))
    assert (r.outcome, r.exit_code, r.agrees) == ("rolled-back", 3, False)
    assert "the sandbox DIFFERS: rolled-back (exit 3)" in report_text(r)
    assert "DUMMY-BAD_start_0 failed" in r.verify
    assert r.observed == ["DUMMY-BAD: absent -> Stopped", "failed: DUMMY-BAD_start_0 on kamailio02: "
                          "state dir missing", "DUMMY-BAD: Stopped -> absent"]
    assert "⛔ **rolled-back**" in report_markdown(r)


def test_a_refusal_is_exit_3_and_verify_is_not_run() -> None:
    r = build_report(decision("refuse"), observe([event("refused", "refused", summary="refused: policy")]))
    assert (r.outcome, r.exit_code, r.agrees) == ("refused", 3, True)
    assert r.verify == "not run: nothing was applied"


def test_applied_but_a_resource_left_stopped_is_unhealthy() -> None:
    r = build_report(decision(), observe([event("apply")], after=status(rsc("IP-HA-01", "Stopped", None))))
    assert (r.outcome, r.exit_code) == ("unhealthy", 3)
    assert r.health == ["IP-HA-01 is not running (target role Started, role Stopped)"]
    assert "health problems left" in report_markdown(r)


def test_an_inconclusive_verify_is_not_shown_healthy() -> None:
    r = build_report(decision(), observe([event("apply"), event("verify", "inconclusive", seconds=3)]))
    assert (r.outcome, r.exit_code) == ("inconclusive", 3)
    assert r.verify.startswith("inconclusive")


def test_an_agent_error_on_the_head_is_a_failure() -> None:
    r = build_report(decision(), observe([event("error", "failure", summary="apply failed: WriteFailed")]))
    assert (r.outcome, r.exit_code) == ("failed", 3)


def test_no_verdict_in_time_is_exit_2_and_other_commits_events_are_not_the_heads() -> None:
    r = build_report(decision(), observe([event("apply", commit=OTHER)], timed_out=True))
    assert (r.outcome, r.exit_code, r.events) == ("timeout", 2, [])


def test_a_head_that_changes_nothing_is_exit_0_without_a_commit() -> None:
    r = build_report(decision("no-change"), observe([], committed_at=None, head_revision=BASE))
    assert (r.outcome, r.exit_code, r.agrees) == ("no-change", 0, True)


def test_the_rollout_fencing_and_prediction_are_reported() -> None:
    impact = Impact(resources=[ResourceImpact(resource="IP-HA-01", action="move", pacemaker_action="move",
                                              nodes=["kamailio01", "kamailio02"])])
    events = [event("apply", record_only=True),
              event("rollout-step", commit=None, seconds=2, summary="corosync-cfgtool -R issued",
                    revision=HEAD, step="reload"),
              event("rollout-step", commit=None, seconds=3, summary="runs on every node", revision=HEAD,
                    step="healthy"),
              event("rollout-step", commit=None, seconds=4, summary="of another revision", revision=OTHER)]
    fence = Fence(target="kamailio03", text="reboot of kamailio03: success")
    r = build_report(decision(impact=impact),
                     observe(events, fences=[fence],
                             after=status(rsc("IP-HA-01", node="kamailio02")), leftovers={"mounts": []}))
    assert r.outcome == "applied"
    assert r.rollout == ["kamailio01: corosync-cfgtool -R issued", "kamailio01: runs on every node"]
    assert r.predicted == ["move IP-HA-01 on kamailio01 -> kamailio02"]
    assert r.observed == ["IP-HA-01: Started on kamailio01 -> Started on kamailio02"]
    assert r.fencing == ["reboot of kamailio03: success"]
    assert r.leftovers == {}
    md = report_markdown(r)
    assert "reboot of kamailio03" in md and "corosync-cfgtool -R issued" in md


def test_json_is_the_report_and_reads_back() -> None:
    r = build_report(decision(), observe([event("apply")]))
    data = json.loads(json.dumps(report_json(r)))
    assert data["outcome"] == "applied" and data["exit_code"] == 1 and data["plan"]["verdict"] == "apply"
    assert PreviewReport.model_validate(data) == r


def test_observed_actions_of_a_clone_count_every_instance() -> None:
    one = status(rsc("stonithssh", node="kamailio01"), rsc("stonithssh", node="kamailio02"))
    two = status(rsc("stonithssh", node="kamailio01"))
    assert observed_actions([one, two]) == ["stonithssh: Started on kamailio01, kamailio02 -> "
                                            "Started on kamailio01"]


SNAPSHOT_CIB = """<cib admin_epoch="0" epoch="12" num_updates="3" validate-with="pacemaker-3.9" dc-uuid="1"
 have-quorum="1" cib-last-written="Wed Dec  2 02:40:00 2026" crm_feature_set="3.16.2">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="o-dc" name="dc-version" value="2.1.5-a3f44794f94"/>
        <nvpair id="o-st" name="stonith-enabled" value="true"/>
      </cluster_property_set>
      <cluster_property_set id="ha-gitops">
        <nvpair id="ha-gitops-revision" name="revision" value="0123456789abcdef0123456789abcdef01234567"/>
      </cluster_property_set>
    </crm_config>
    <nodes><node id="1" uname="kamailio01"/></nodes>
    <resources><primitive id="P1" class="ocf" provider="pacemaker" type="Dummy"/></resources>
    <constraints/>
  </configuration>
  <status><node_state id="1" uname="kamailio01"/></status>
</cib>"""


def snapshot_text(**fields: Any) -> str:
    """A format-1 snapshot as `ha-gitops snapshot` writes it (the model's own JSON)."""
    defaults: dict[str, Any] = {"node": "kamailio01", "cib": SNAPSHOT_CIB, "crm_mon": "<pacemaker-result/>",
                                "quorum": "", "corosync_conf": "totem {\n\tversion: 2\n}\n",
                                "settings": SnapshotSettings(node_name="kamailio01")}
    return Snapshot(**{**defaults, **fields}).dump()


def test_a_snapshot_stands_for_its_configuration_and_corosync_conf() -> None:
    files = snapshot_base_files(snapshot_text(), "prod.snapshot")
    assert files["corosync.conf"] == "totem {\n\tversion: 2\n}\n"
    xml = files["cib.xml"]
    assert xml.startswith("<configuration>") and 'id="P1"' in xml and 'name="stonith-enabled"' in xml
    assert "dc-version" not in xml and "ha-gitops-revision" not in xml and "node_state" not in xml


def test_what_is_not_a_format_1_snapshot_is_refused_naming_the_file() -> None:
    for text, why in (("{", "not an ha-gitops snapshot"), ('{"kind": "x"}', "not an ha-gitops snapshot"),
                      ('{"kind": "ha-gitops-snapshot", "format": 2}', "format"),
                      (json.dumps({**json.loads(snapshot_text()), "cib": None}), "cib"),
                      (snapshot_text(corosync_conf=None), "no corosync.conf")):
        with pytest.raises(InputError, match=why) as exc:
            snapshot_base_files(text, "prod.snapshot")
        assert "prod.snapshot" in str(exc.value)
