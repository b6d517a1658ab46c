"""The agent's /metrics from the values its passes return, as Prometheus reads them (and promtool)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.cib.marker import Marker
from controller.decide import Basis, Decision, Drift, Reason
from controller.plan import Plan
from controller.reconcile import PassResult
from controller.service.metrics import AgentMetrics
from controller.source.models import SyncResult
from controller.source.webhooks import Provider

OLD, NEW = "1" * 40, "2" * 40


def metrics(clock: float = 1_800_000_000.0) -> AgentMetrics:
    return AgentMetrics(node="n1", branch="main", repo="file:///srv/git/cluster.git", clock=lambda: clock)


def samples(m: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: AgentMetrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


def decision(verdict: str = "no-change", codes: tuple[str, ...] = (), drift: bool = False,
             version: str = "0.10") -> Decision:
    return Decision(verdict=verdict, plan=Plan(cluster="c"),  # type: ignore[arg-type]
                    reasons=[Reason(code=c, message=c) for c in codes],  # type: ignore[arg-type]
                    drift=Drift(target="head", changes=[], correct=True) if drift else None,
                    basis=Basis(cib_version=version))


def applied(rev: str = NEW) -> PassResult:
    return PassResult(outcome="applied", revision=rev, leader=True, dc="n1", duration=1.2,
                      timings={"fetch": 0.1, "load": 0.4, "write": 0.3}, decision=decision("apply"),
                      marker=Marker(revision=OLD, applied_at="2026-12-01T10:00:00+00:00"))


def test_an_apply_moves_the_applied_revision_and_counts_the_pass() -> None:
    m = metrics()
    m.observe_pass(PassResult(outcome="no-change", revision=OLD, dc="n2", decision=decision(),
                              marker=Marker(revision=OLD, applied_at="2026-12-01T10:00:00+00:00")))
    assert value(m, "ha_gitops_applied_revision_info", revision=OLD) == 1
    assert value(m, "ha_gitops_applied_timestamp_seconds") == 1_796_119_200.0
    assert value(m, "ha_gitops_writer") == 0
    m.observe_pass(applied())
    assert value(m, "ha_gitops_applied_revision_info", revision=NEW) == 1
    assert value(m, "ha_gitops_applied_revision_info", revision=OLD) is None  # one revision at a time
    assert value(m, "ha_gitops_applied_timestamp_seconds") == 1_800_000_000.0
    assert value(m, "ha_gitops_passes_total", outcome="applied") == 1
    assert value(m, "ha_gitops_passes_total", outcome="no-change") == 1
    assert value(m, "ha_gitops_passes_total", outcome="refused") == 0  # every outcome is there from the start
    assert value(m, "ha_gitops_writer") == 1
    assert value(m, "ha_gitops_pass_stage_duration_seconds_count", stage="load") == 1
    assert value(m, "ha_gitops_pass_stage_duration_seconds_sum", stage="load") == pytest.approx(0.4)


def test_refusals_by_reason_and_the_operator_switches() -> None:
    m = metrics()
    refused = PassResult(outcome="pinned", revision=NEW, changes=3, leader=True,
                         decision=decision("refuse", ("pinned", "policy")),
                         marker=Marker(revision=OLD, pinned=NEW, suspended=False))
    m.observe_pass(refused)
    m.observe_pass(refused)
    assert value(m, "ha_gitops_refusals_total", reason="policy") == 2
    assert value(m, "ha_gitops_refused", reason="pinned") == 1
    assert value(m, "ha_gitops_refused", reason="invalid") == 0
    assert value(m, "ha_gitops_pinned") == 1 and value(m, "ha_gitops_suspended") == 0
    assert value(m, "ha_gitops_pending_changes") == 3
    m.observe_pass(PassResult(outcome="suspended", decision=decision("refuse", ("suspended",)),
                              marker=Marker(revision=OLD, suspended=True, bad=NEW)))
    assert value(m, "ha_gitops_refused", reason="pinned") == 0
    assert value(m, "ha_gitops_suspended") == 1 and value(m, "ha_gitops_bad_revision") == 1


def test_drift_is_detected_once_per_cib_version_and_counted_when_corrected() -> None:
    m = metrics()
    seen = PassResult(outcome="drift-reported", decision=decision("report-drift", drift=True, version="0.11"))
    m.observe_pass(seen)
    m.observe_pass(seen)
    assert value(m, "ha_gitops_drift_detected_total") == 1
    assert value(m, "ha_gitops_drift_uncorrected") == 1
    m.observe_pass(PassResult(outcome="drift-corrected", leader=True,
                              decision=decision("correct-drift", drift=True, version="0.12")))
    assert value(m, "ha_gitops_drift_detected_total") == 2
    assert value(m, "ha_gitops_drift_corrected_total") == 1
    assert value(m, "ha_gitops_drift_uncorrected") == 0


def test_rollout_state_is_one_hot() -> None:
    m = metrics()
    assert value(m, "ha_gitops_rollout_state", state="nothing") == 1
    m.observe_pass(PassResult(outcome="no-change", decision=decision(), corosync={"action": "reload"}))
    assert value(m, "ha_gitops_rollout_state", state="reload") == 1
    assert value(m, "ha_gitops_rollout_state", state="nothing") == 0


def test_source_fetches_checks_errors_and_last_good_fetch() -> None:
    m = metrics()
    m.observe_sync(SyncResult(ok=True, revision=None, previous_sha=None))
    m.observe_sync(SyncResult(ok=True, revision=None, previous_sha=None, checked=True))
    m.observe_sync(SyncResult(ok=False, revision=None, previous_sha=None, error="cannot fetch"))
    m.observe_sync(SyncResult(ok=False, revision=None, previous_sha=None, error="x", skipped=True))
    assert value(m, "ha_gitops_source_fetches_total") == 2
    assert value(m, "ha_gitops_source_checks_total") == 1
    assert value(m, "ha_gitops_source_errors_total") == 1
    assert value(m, "ha_gitops_source_up") == 0
    assert value(m, "ha_gitops_source_last_good_fetch_timestamp_seconds") == 1_800_000_000.0


def test_a_failed_pass_keeps_what_the_last_good_one_saw() -> None:
    m = metrics()
    m.observe_pass(applied())
    m.observe_pass(PassResult(outcome="error", message="cib unreachable"))
    m.observe_failed_pass()
    assert value(m, "ha_gitops_passes_total", outcome="error") == 2
    assert value(m, "ha_gitops_applied_revision_info", revision=NEW) == 1
    assert value(m, "ha_gitops_writer") == 1


def test_webhooks_and_audit() -> None:
    m = metrics()
    m.observe_webhook(Provider.GITHUB, "reject")
    m.observe_audit_verify(False)
    assert value(m, "ha_gitops_webhooks_total", provider="github", action="reject") == 1
    assert value(m, "ha_gitops_webhooks_total", provider="gitlab", action="trigger") == 0
    assert value(m, "ha_gitops_audit_chain_verified") == 0


def test_two_agents_in_one_process_do_not_share_a_registry() -> None:
    a, b = metrics(), metrics()
    a.observe_pass(applied())
    assert value(b, "ha_gitops_passes_total", outcome="applied") == 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
def test_the_exposition_passes_promtool_check_metrics() -> None:
    m = metrics()
    m.observe_pass(applied())
    m.observe_sync(SyncResult(ok=True, revision=None, previous_sha=None))
    m.observe_audit_verify(True)
    r = subprocess.run(["promtool", "check", "metrics"], input=m.exposition(), capture_output=True,
                       timeout=30, check=False)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
