"""corosync.conf static checks: unknown keys are warnings naming key and line; nodes without an address,
knet nodes without nodeid and duplicate addresses, ids or names are errors naming both lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.corosync import parse_corosync
from controller.corosync.lint import LintIssue, lint_corosync
from tests.conftest import CORPUS

CORPUS = CORPUS / "corosync"
REFERENCE = Path(__file__).resolve().parents[2] / "desired" / "kamailio" / "corosync.conf"

KNET = """totem {
    version: 2
    cluster_name: c
    transport: knet
}
quorum {
    provider: corosync_votequorum
}
nodelist {
    node {
        ring0_addr: 192.0.2.1
        nodeid: 1
        name: a
    }
    node {
        ring0_addr: 192.0.2.2
        nodeid: 2
        name: b
    }
}
"""


def lint(text: str) -> list[LintIssue]:
    return lint_corosync(parse_corosync(text, source="corosync.conf"))


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate(text.split("\n")) if needle in line]
    return hits[occurrence - 1]


def test_clean_files_have_no_findings() -> None:
    assert lint(KNET) == []
    assert [i for i in lint(REFERENCE.read_text()) if i.severity == "error"] == []


def test_typo_in_totem_key_is_a_warning_with_line_and_suggestion() -> None:
    text = KNET.replace("cluster_name: c\n", "cluster_name: c\n    tokn: 3000\n")
    [issue] = lint(text)
    assert issue.severity == "warning" and issue.line == line_of(text, "tokn")
    assert issue.path == "totem.tokn"
    assert "'tokn'" in issue.message and "did you mean 'token'" in issue.message


def test_typo_in_section_name_is_a_warning_naming_the_section() -> None:
    text = KNET.replace("quorum {", "quorom {")
    issues = lint(text)
    [issue] = [i for i in issues if i.path == "quorom"]
    assert issue.severity == "warning" and issue.line == line_of(text, "quorom")
    assert "did you mean 'quorum'" in issue.message and "everything in it" in issue.message


def test_removed_corosync2_key_says_what_replaced_it() -> None:
    text = KNET.replace("transport: knet\n", "transport: knet\n    rrp_mode: passive\n")
    [issue] = lint(text)
    assert issue.severity == "warning" and issue.line == line_of(text, "rrp_mode")
    assert "link_mode" in issue.message


def test_keys_of_nested_sections_are_checked() -> None:
    text = KNET.replace("transport: knet\n", "transport: knet\n    interface {\n        linknumber: 0\n"
                        "        knet_ping_intervall: 10\n    }\n")
    text += "logging {\n    logger_subsys {\n        subsys: QUORUM\n        debgu: on\n    }\n}\n"
    issues = {i.path: i for i in lint(text)}
    assert set(issues) == {"totem.interface.knet_ping_intervall", "logging.logger_subsys.debgu"}
    assert issues["logging.logger_subsys.debgu"].line == line_of(text, "debgu")
    assert "did you mean 'debug'" in issues["logging.logger_subsys.debgu"].message


def test_votequorum_and_qdevice_keys_are_known() -> None:
    text = KNET.replace("provider: corosync_votequorum\n", """provider: corosync_votequorum
    wait_for_all: 1
    last_man_standing: 1
    last_man_standing_window: 10000
    auto_tie_breaker: 1
    auto_tie_breaker_node: lowest
    device {
        model: net
        votes: 1
        net {
            host: qnetd.example.org
            algorithm: ffsplit
        }
        heuristics {
            mode: sync
            exec_ping: /bin/ping -q -c 1 192.0.2.254
        }
    }
""")
    assert lint(text) == []
    bad = text.replace("algorithm: ffsplit", "algoritm: ffsplit")
    [issue] = lint(bad)
    assert issue.path == "quorum.device.net.algoritm" and issue.line == line_of(bad, "algoritm")


@pytest.mark.parametrize("transport", ["knet", "udpu"])
def test_node_without_address_is_an_error(transport: str) -> None:
    text = KNET.replace("transport: knet", f"transport: {transport}").replace("ring0_addr: 192.0.2.2\n", "")
    [issue] = [i for i in lint(text) if i.severity == "error"]
    node_line = line_of(text, "node {", 2)
    assert issue.line == node_line and "has no address" in issue.message and "ring0_addr" in issue.message


def test_udpu_node_needs_ring0() -> None:
    text = KNET.replace("transport: knet", "transport: udpu").replace("ring0_addr: 192.0.2.2",
                                                                      "ring1_addr: 192.0.2.2")
    [issue] = [i for i in lint(text) if i.severity == "error"]
    assert "no ring0_addr" in issue.message and issue.line == line_of(text, "node {", 2)


def test_knet_node_may_use_another_link_but_all_nodes_the_same_links() -> None:
    both = KNET.replace("ring0_addr: 192.0.2.1", "ring1_addr: 192.0.2.1").replace(
        "ring0_addr: 192.0.2.2", "ring1_addr: 192.0.2.2")
    assert lint(both) == []
    mixed = KNET.replace("ring0_addr: 192.0.2.2", "ring1_addr: 192.0.2.2")
    [issue] = lint(mixed)
    assert issue.severity == "error" and issue.line == line_of(mixed, "node {", 2)
    assert "link(s) 1" in issue.message and f"line {line_of(mixed, 'node {', 1)}" in issue.message


def test_knet_node_without_nodeid_is_an_error() -> None:
    text = KNET.replace("nodeid: 2\n", "")
    [issue] = lint(text)
    assert issue.severity == "error" and "no nodeid" in issue.message
    assert issue.line == line_of(text, "node {", 2)


def test_duplicate_address_names_both_lines() -> None:
    text = KNET.replace("ring0_addr: 192.0.2.2", "ring0_addr: 192.0.2.1")
    [issue] = lint(text)
    first, second = line_of(text, "ring0_addr", 1), line_of(text, "ring0_addr", 2)
    assert issue.severity == "error" and issue.line == second
    assert f"line {first}" in issue.message and f"line {second}" in issue.message
    assert "192.0.2.1" in issue.message


def test_duplicate_ipv6_address_is_found_in_another_spelling() -> None:
    text = KNET.replace("ring0_addr: 192.0.2.1", "ring0_addr: 2001:db8::1").replace(
        "ring0_addr: 192.0.2.2", "ring0_addr: 2001:DB8:0::1")
    [issue] = lint(text)
    assert issue.severity == "error" and "already used" in issue.message


def test_duplicate_name_and_nodeid_name_both_lines() -> None:
    text = KNET.replace("name: b", "name: a").replace("nodeid: 2", "nodeid: 1")
    issues = {i.path: i for i in lint(text)}
    name, nid = issues["nodelist.node.name"], issues["nodelist.node.nodeid"]
    assert name.line == line_of(text, "name: a", 2) and f"line {line_of(text, 'name: a', 1)}" in name.message
    assert nid.line == line_of(text, "nodeid: 1", 2)
    assert f"line {line_of(text, 'nodeid: 1', 1)}" in nid.message
    assert "node id 1" in nid.message


def test_explicit_nodeid_equal_to_a_derived_one_is_a_duplicate() -> None:
    # udpu derives the id of a node without nodeid from its ring0 IPv4 address (10.220.1.21 = 182190357
    # with clear_node_high_bit; the high bit is clear anyway for 10.x)
    text = REFERENCE.read_text().replace("ring0_addr: 10.220.1.23\n",
                                         "ring0_addr: 10.220.1.23\nnodeid: 182190357\n")
    [issue] = [i for i in lint(text) if i.severity == "error"]
    assert "node id 182190357" in issue.message and "derived from ring0_addr 10.220.1.21" in issue.message
    assert issue.line == line_of(text, "nodeid: 182190357")


def test_derived_ids_respect_clear_node_high_bit() -> None:
    # 192.0.2.1 and 64.0.2.1 differ only in the high bit: the same id once it is cleared
    base = KNET.replace("transport: knet", "transport: udpu").replace("nodeid: 1\n", "").replace(
        "nodeid: 2\n", "").replace("ring0_addr: 192.0.2.2", "ring0_addr: 64.0.2.1")
    assert [i for i in lint(base) if i.severity == "error"] == []
    cleared = base.replace("transport: udpu", "transport: udpu\n    clear_node_high_bit: yes")
    [issue] = [i for i in lint(cleared) if i.severity == "error"]
    assert "node id 1073742337" in issue.message


def test_one_duplicate_address_is_one_error_not_two() -> None:
    text = REFERENCE.read_text().replace("ring0_addr: 10.220.1.23", "ring0_addr: 10.220.1.22")
    errors = [i for i in lint(text) if i.severity == "error"]
    assert len(errors) == 1 and "address '10.220.1.22'" in errors[0].message


CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.name != "SOURCES.txt" and not p.name.endswith(".txt"))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_files_lint_without_crashing_and_errors_are_real(path: Path) -> None:
    issues = lint_corosync(parse_corosync(path.read_bytes(), source=str(path)))
    for issue in issues:
        assert issue.line is not None and issue.path
    # pcs's own key (cluster_uuid, pcs 0.11) is not a typo
    assert not [i for i in issues if "cluster_uuid" in i.path]
