"""`corosync -t` on a candidate: corosync 3.1.7's complaint becomes a finding with the file's line.

Real corosync runs here (no cluster needed: -t only reads the file). Addresses on 127.0.0.x are this
machine's, so a loopback nodelist gets corosync's whole check, node checks included."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.cluster.corosync_test import CorosyncTest, parse_corosync_test
from controller.cluster.runner import ToolRunner

REFERENCE = Path(__file__).resolve().parents[2] / "desired" / "kamailio" / "corosync.conf"
SOURCE = "desired/c/corosync.conf"

LOOPBACK = """totem {
    version: 2
    cluster_name: t
    transport: knet
}
quorum {
    provider: corosync_votequorum
}
logging {
    to_stderr: no
    to_syslog: yes
}
nodelist {
    node {
        ring0_addr: 127.0.0.1
        nodeid: 1
        name: a
    }
    node {
        ring0_addr: 127.0.0.2
        nodeid: 2
        name: b
    }
}
"""

needs_corosync = pytest.mark.skipif(shutil.which("corosync") is None, reason="corosync is not installed")


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.split("\n")) if needle in line)


@needs_corosync
def test_a_file_corosync_accepts_gives_no_finding() -> None:
    assert CorosyncTest()(LOOPBACK, SOURCE) == []


@needs_corosync
def test_a_bad_value_is_an_error_at_its_line() -> None:
    text = LOOPBACK.replace("cluster_name: t", "cluster_name: t\n    token: 3s")
    [f] = CorosyncTest()(text, SOURCE)
    assert f.severity == "error" and f.file == SOURCE and f.line == line_of(text, "token: 3s")
    assert '"totem.token"' in f.message and '"3s"' in f.message and f.message.startswith("corosync -t: ")


@needs_corosync
def test_an_unknown_cipher_is_an_error_at_its_line() -> None:
    text = LOOPBACK.replace("transport: knet", "transport: knet\n    crypto_cipher: aes999")
    [f] = CorosyncTest()(text, SOURCE)
    assert f.line == line_of(text, "aes999") and "Invalid cipher type" in f.message


@needs_corosync
def test_node_checks_are_reported_even_when_the_file_logs_nowhere_visible() -> None:
    # the file says to_stderr: no; corosync's verdict still reaches the user
    text = LOOPBACK.replace("nodeid: 2", "nodeid: 1")
    [f] = CorosyncTest()(text, SOURCE)
    assert f.severity == "error" and "Nodeid 1 appears twice" in f.message
    text = LOOPBACK.replace("cluster_name: t", "cluster_name: t\n    token: 10\n    consensus: 5")
    [f] = CorosyncTest()(text, SOURCE)
    assert "token timeout parameter (10 ms)" in f.message


@needs_corosync
def test_on_a_machine_that_is_not_a_node_only_syntax_and_values_are_checked_and_it_says_so() -> None:
    findings = CorosyncTest()(REFERENCE.read_text(), SOURCE)
    assert not [f for f in findings if f.severity == "error"]
    [note] = [f for f in findings if "not a node" in f.message]
    assert note.severity == "warning" and "No valid name found for local host" in note.message
    # corosync's own warnings about the file are kept, in full
    assert any("bindnetaddr is used together with nodelist" in f.message for f in findings)


@needs_corosync
def test_uidgid_d_next_to_the_real_file_is_read(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc-corosync"
    (conf_dir / "uidgid.d").mkdir(parents=True)
    (conf_dir / "uidgid.d" / "ops").write_text("uidgid {\n    uid: no_such_user_hgv\n}\n")
    [f] = CorosyncTest(conf_dir=conf_dir)(LOOPBACK, SOURCE)
    assert f.severity == "error" and "no_such_user_hgv" in f.message
    assert f"{conf_dir}/uidgid.d/ops:2" in f.message and f.line is None  # not a line of corosync.conf


def test_corosync_missing_is_a_warning_not_a_crash() -> None:
    [f] = CorosyncTest(ToolRunner(prefix=["/nonexistent/hgv-tool"]))(LOOPBACK, SOURCE)
    assert f.severity == "warning" and "not checked by corosync" in f.message


# ---- the parser alone, on corosync 3.1.7's output as measured


def test_parser_error_of_the_candidate_maps_to_its_line_and_past_the_end_to_the_last_line() -> None:
    out = "parser error: /tmp/x/corosync.conf:5: Value of key \"totem.token\" is expected to be integer\n"
    [f] = parse_corosync_test(8, out, source=SOURCE, lines=30, candidate="/tmp/x/corosync.conf")
    assert f.line == 5
    out = "parser error: /tmp/x/corosync.conf:43: Missing closing brace\n"
    [f] = parse_corosync_test(8, out, source=SOURCE, lines=30, candidate="/tmp/x/corosync.conf")
    assert f.line == 30 and "Missing closing brace" in f.message


def test_an_unexplained_failure_keeps_the_whole_output() -> None:
    out = "something new " * 100
    [f] = parse_corosync_test(8, out, source=SOURCE, lines=3, candidate="/c")
    assert f.severity == "error" and out.strip() in f.message and "exited 8" in f.message
