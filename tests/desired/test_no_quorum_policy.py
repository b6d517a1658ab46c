"""`validate` warns when no-quorum-policy=ignore lets a partitioned node fence the majority.

The reference cluster (3 nodes, no-quorum-policy=ignore) gets the warning from the real CLI and stays
valid; the rule itself is read as Pacemaker reads the option (the winning property set, any case).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controller.desired.checks import check_no_quorum_policy
from controller.desired.crm_syntax import CrmConversion
from controller.desired.findings import Finding
from controller.desired.state import read_desired
from tests.desired.desiredtestlib import KAMAILIO, REPO

CLI = str(REPO / ".venv" / "bin" / "ha-gitops")


def corosync_conf(nodes: int) -> str:
    body = "".join(f"node {{\nring0_addr: 10.0.0.{i + 1}\nnodeid: {i + 1}\n}}\n" for i in range(nodes))
    two = "two_node: 1\n" if nodes == 2 else ""
    return (f"totem {{\nversion: 2\ncluster_name: c\n}}\nquorum {{\nprovider: corosync_votequorum\n{two}}}\n"
            f"nodelist {{\n{body}}}\n")


def no_crmsh(text: str, source: str) -> CrmConversion:
    raise AssertionError("these folders are cib.xml")


def warnings(tmp_path: Path, sets: str, nodes: int = 3) -> list[Finding]:
    (tmp_path / "corosync.conf").write_text(corosync_conf(nodes))
    (tmp_path / "cib.xml").write_text(f"<configuration>\n<crm_config>\n{sets}\n</crm_config>\n<nodes/>\n"
                                      "<resources/>\n<constraints/>\n</configuration>\n")
    state = read_desired(tmp_path, convert_crm=no_crmsh)
    return check_no_quorum_policy(state, state.configuration())


def bootstrap(*pairs: tuple[str, str], set_id: str = "cib-bootstrap-options", extra: str = "") -> str:
    nvs = "".join(f'<nvpair id="{set_id}-{n}" name="{n}" value="{v}"/>\n' for n, v in pairs)
    return f'<cluster_property_set id="{set_id}" {extra}>\n{nvs}</cluster_property_set>'


def test_reference_cluster_is_warned_and_stays_valid() -> None:
    res = subprocess.run([CLI, "validate", str(KAMAILIO), "--no-agents"], capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "no-quorum-policy" in ln)
    assert line.startswith("warning: ") and "cib.crm" in line
    assert "no-quorum-policy=ignore on a cluster of 3 nodes" in line
    assert "fences the healthy majority" in line and "no-quorum-policy=stop" in line


def test_three_nodes_with_ignore_in_any_case_is_warned_with_its_line(tmp_path: Path) -> None:
    found = warnings(tmp_path, bootstrap(("no-quorum-policy", "IGNORE")))
    assert len(found) == 1
    assert found[0].severity == "warning" and found[0].line == 4
    assert found[0].element == "cib-bootstrap-options-no-quorum-policy"
    assert found[0].message.startswith("no-quorum-policy=IGNORE on a cluster of 3 nodes: ")


@pytest.mark.parametrize(("sets", "nodes"), [
    (bootstrap(("no-quorum-policy", "ignore")), 2),   # two nodes: two_node is the answer, not this rule
    (bootstrap(("no-quorum-policy", "stop")), 5),
    (bootstrap(("no-quorum-policy", "freeze")), 3),
    (bootstrap(), 3),                                  # default: stop
    # a higher-scored set wins over cib-bootstrap-options, as in Pacemaker's unpack_config
    (bootstrap(("no-quorum-policy", "ignore")) + bootstrap(("no-quorum-policy", "stop"), set_id="ops",
                                                            extra='score="10"'), 3),
])
def test_no_warning_where_pacemaker_would_not_ignore_quorum(tmp_path: Path, sets: str, nodes: int) -> None:
    assert warnings(tmp_path, sets, nodes) == []


def test_the_winning_set_is_the_one_read(tmp_path: Path) -> None:
    sets = bootstrap(("no-quorum-policy", "stop")) + bootstrap(("no-quorum-policy", "ignore"), set_id="late",
                                                               extra='score="100"')
    assert [f.element for f in warnings(tmp_path, sets)] == ["late-no-quorum-policy"]


def test_without_fencing_the_warning_says_split_brain(tmp_path: Path) -> None:
    off = warnings(tmp_path, bootstrap(("no-quorum-policy", "ignore"), ("stonith-enabled", "No")))
    assert "split brain" in off[0].message and "fences" not in off[0].message
    # a value Pacemaker cannot read as a boolean leaves fencing at its default, on
    odd = warnings(tmp_path, bootstrap(("no-quorum-policy", "ignore"), ("stonith-enabled", "maybe")))
    assert "fences the healthy majority" in odd[0].message


def test_a_rule_set_with_ignore_is_warned_for_while_its_rule_matches(tmp_path: Path) -> None:
    rule = ('<cluster_property_set id="night" score="50">\n<rule id="night-r" score="0">'
            '<date_expression id="night-d" operation="gt" start="2030-01-01"/></rule>\n'
            '<nvpair id="night-nqp" name="no-quorum-policy" value="ignore"/>\n</cluster_property_set>')
    found = warnings(tmp_path, rule + bootstrap(("no-quorum-policy", "stop")))
    assert [f.element for f in found] == ["night-nqp"]
    assert "while its rule matches" in found[0].message
