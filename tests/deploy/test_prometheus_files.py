"""deploy/prometheus and deploy/grafana: the alert rules load and fire as their tests say (promtool), and
every metric the rules and the dashboard query is one the agent exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.cib.marker import Marker
from controller.reconcile import PassResult
from controller.service.metrics import AgentMetrics
from controller.source.models import SyncResult
from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "ha-gitops.json"
METRIC = re.compile(r"\bha_gitops_[a-z0-9_]+")
need_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                   reason="promtool (Debian package prometheus) missing")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> None:
    r = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@need_promtool
def test_the_alert_rules_and_the_scrape_example_are_valid() -> None:
    promtool("check", "rules", "ha-gitops-alerts.yml")
    promtool("check", "config", "prometheus.yml")


@need_promtool
def test_the_alert_rules_fire_as_their_tests_say() -> None:
    promtool("test", "rules", "ha-gitops-alerts.test.yml")


def exported() -> set[str]:
    """Every sample name a busy agent's /metrics holds."""
    m = AgentMetrics(node="n1", branch="main", repo="file:///r")
    m.observe_pass(PassResult(outcome="applied", revision="a" * 40, timings={"fetch": 0.1}, leader=True,
                              marker=Marker(revision="b" * 40)))
    m.observe_sync(SyncResult(ok=True, revision=None, previous_sha=None))
    m.observe_audit_verify(True)
    text = m.exposition().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}


def dashboard_exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        q = node.get("query")
        if isinstance(q, dict) and isinstance(q.get("query"), str):
            found.append(q["query"])
        return found + [e for v in node.values() for e in dashboard_exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in dashboard_exprs(v)]
    return []


def test_the_dashboard_queries_only_metrics_the_agent_exports() -> None:
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text()))
    assert len(exprs) >= 10
    names = {n for e in exprs for n in METRIC.findall(e)}
    assert names - exported() == set()
    # Each panel's queries name at least one of ours: none is a leftover from another dashboard.
    assert all(METRIC.search(e) for e in exprs)


def test_the_alert_rules_query_only_metrics_the_agent_exports() -> None:
    text = (PROMETHEUS / "ha-gitops-alerts.yml").read_text()  # one-line exprs (promtool checks the YAML)
    exprs = re.findall(r"^\s*expr:\s*(.+)$", text, re.M)
    alerts = set(re.findall(r"^\s*- alert:\s*(\w+)$", text, re.M))
    assert len(exprs) == len(alerts)
    assert {n for e in exprs for n in METRIC.findall(e)} - exported() == set()
    assert {"HaGitopsDriftNotCorrected", "HaGitopsRevisionRefused", "HaGitopsAutoRollback",
            "HaGitopsNoGoodFetch", "HaGitopsRolloutStuck"} <= alerts
