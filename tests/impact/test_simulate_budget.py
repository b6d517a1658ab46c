"""crm_simulate's time budget grows with the CIB, and a run past it is refused with a message naming both.

A 2,000-primitive commit (which made every pass die on the old fixed 60 s timeout) is predicted, by the
real crm_simulate, within its budget; a crm_simulate that hangs is stopped at the budget and the error
says which budget and which size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import controller.limits
from controller.cib.xml import parse_xml_file
from controller.cluster.simulate import simulate
from controller.command import Result, run
from controller.impact import SimulationError
from controller.limits import simulate_budget
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]
LARGEST_REAL_CIB = CORPUS / "cib" / "pacemaker-scheduler" / "params-6.xml"
NODES = ("node01", "node02", "node03")


def cib_with(primitives: int) -> etree._Element:
    """Three nodes online, running nothing yet, and `primitives` Dummy resources configured."""
    cib = etree.Element("cib", {"validate-with": "pacemaker-3.7", "admin_epoch": "0", "epoch": "1",
                                "num_updates": "0", "have-quorum": "1"})
    config = etree.SubElement(cib, "configuration")
    props = etree.SubElement(etree.SubElement(config, "crm_config"), "cluster_property_set", id="opts")
    etree.SubElement(props, "nvpair", id="opts-stonith", name="stonith-enabled", value="false")
    nodes = etree.SubElement(config, "nodes")
    status = etree.SubElement(cib, "status")
    for i, name in enumerate(NODES):
        etree.SubElement(nodes, "node", id=str(i + 1), uname=name)
        etree.SubElement(status, "node_state", id=str(i + 1), uname=name, in_ccm="true", crmd="online",
                         join="member", expected="member")
    resources = etree.SubElement(config, "resources")
    for i in range(primitives):
        p = etree.SubElement(resources, "primitive", {"id": f"p{i}", "class": "ocf", "provider": "pacemaker",
                                                      "type": "Dummy"})
        ops = etree.SubElement(p, "operations")
        etree.SubElement(ops, "op", id=f"p{i}-mon", name="monitor", interval="30s", timeout="20s")
    etree.SubElement(config, "constraints")
    return cib


class Recording:
    """The real crm_simulate, with the timeout each run was given written down."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def __call__(self, argv: Sequence[str], *, timeout: float, **kw: Any) -> Result:
        self.timeouts.append(timeout)
        return run(argv, timeout=timeout, **kw)


def test_a_2000_primitive_commit_is_predicted_within_its_budget() -> None:
    live, proposed = cib_with(0), cib_with(2000).find("configuration")
    assert proposed is not None
    budget = simulate_budget(proposed)
    assert budget.units == 2000 and budget.seconds > 60  # the old fixed timeout it died on
    runner = Recording()
    started = time.monotonic()
    impact = simulate(live, proposed, runner=runner)
    took = time.monotonic() - started
    assert len(impact.of("start")) == 2000
    # each run gets the budget of its own CIB: the live one (no primitives) the base
    assert sorted(runner.timeouts) == [simulate_budget(live).seconds, budget.seconds]
    assert took < budget.seconds / 4  # a wide margin on this machine (bench/results/bounded_work.md)


def hangs(argv: Sequence[str], *, timeout: float, **kw: Any) -> Result:
    """A crm_simulate that never answers: a real process, stopped by the real timeout."""
    return run(["sleep", "30"], timeout=timeout)


def test_a_run_past_its_budget_is_refused_naming_budget_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    live = parse_xml_file(LARGEST_REAL_CIB)
    proposed = live.find("configuration")
    assert proposed is not None
    monkeypatch.setattr(controller.limits, "SIMULATE_BASE", 0.2)
    monkeypatch.setattr(controller.limits, "SIMULATE_PER_PRIMITIVE", 0.001)
    started = time.monotonic()
    with pytest.raises(SimulationError) as err:
        simulate(live, proposed, runner=hangs)
    assert time.monotonic() - started < 25  # both stopped at their budgets, not after the 30 s sleep
    # both runs hang; the live CIB's failure is the one reported
    assert str(err.value) == ("crm_simulate on the live CIB did not finish within its time budget of 0.4s "
                              "(0.2s + 0.001s x 131 primitives); the configuration is too large to evaluate "
                              "in time on this machine")


def test_a_fixed_timeout_still_names_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    live = cib_with(3)
    with pytest.raises(SimulationError, match=r"time budget of 0.3s \(fixed; 3 primitives\)"):
        simulate(live, live, runner=hangs, timeout=0.3)


def test_a_cib_the_old_argv_aborted_on_is_predicted(tmp_path: Path) -> None:
    """`crm_simulate --simulate` (the argv used before) hits a Pacemaker 2.1.5 assertion executing this
    valid scheduler regression CIB's transition (SIGABRT): every change on it was `impact-unknown`."""
    live = parse_xml_file(CORPUS / "cib" / "pacemaker-scheduler"
                          / "clone-recover-no-shuffle-2.xml")
    old = run(["crm_simulate", "--simulate", "--xml-pipe", "--output-as=xml"], timeout=60, check=False,
              input=etree.tostring(live).decode(), env={"CIB_shadow_dir": str(tmp_path)})
    assert old.returncode != 0 and "fatal assertion" in old.stderr
    proposed = live.find("configuration")
    assert proposed is not None
    impact = simulate(live, proposed)
    assert impact.resources == []  # the same configuration changes nothing
    assert impact.baseline  # what the cluster does anyway is still seen
