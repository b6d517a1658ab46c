"""Typed model (node ids as corosync derives them) and the classified key diff."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from controller.corosync import classify, diff_corosync, highest_class, load_corosync, parse_corosync
from controller.errors import InputError
from tests.conftest import CORPUS

CORPUS = CORPUS / "corosync"
REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "ha-gitops")


def test_kamailio_node_ids_are_the_ipv4_addresses() -> None:
    _, model = load_corosync((REPO / "desired" / "kamailio" / "corosync.conf").read_bytes())
    assert model.totem.clear_node_high_bit is True
    assert model.totem.token == 3000
    assert model.quorum.provider == "corosync_votequorum"
    assert model.quorum.expected_votes == 3
    for node in model.nodes:
        assert node.effective_nodeid(True) == int(ipaddress.IPv4Address(node.ring0_addr))


def test_clear_node_high_bit_clears_bit_31() -> None:
    text = "totem {\n clear_node_high_bit: %s\n}\nnodelist {\n node {\n  ring0_addr: 192.168.1.5\n }\n}\n"
    full = int(ipaddress.IPv4Address("192.168.1.5"))
    assert full >= 2**31
    assert load_corosync(text % "no")[1].node_ids().keys() == {full}
    assert load_corosync(text % "yes")[1].node_ids().keys() == {full - 2**31}


def test_explicit_nodeid_wins_and_hostnames_have_no_derived_id() -> None:
    _, model = load_corosync((CORPUS / "pcs-0.9.170__pcs_test_resources_corosync-3nodes.conf").read_bytes())
    assert [n.effective_nodeid() for n in model.nodes] == [1, 2, 3]
    _, model = load_corosync("nodelist {\n node {\n  ring0_addr: rh7-1\n }\n}\n")
    assert model.nodes[0].effective_nodeid() is None


def test_bad_integer_names_its_line() -> None:
    with pytest.raises(InputError) as exc:
        load_corosync("totem {\n  version: 2\n  token: soon\n}\n", source="c.conf")
    assert (exc.value.file, exc.value.line) == ("c.conf", 3)


@pytest.mark.parametrize("path,cls", [
    ("totem.token", "reload"), ("totem.consensus", "reload"), ("totem.join", "reload"),
    ("logging.debug", "reload"), ("logging.logger_subsys[subsys=QUORUM].debug", "reload"),
    ("nodelist.node[nodeid=3].ring0_addr", "reload"), ("quorum.expected_votes", "reload"),
    ("quorum.two_node", "reload"), ("quorum.votes", "reload"),
    ("totem.transport", "cluster-restart"), ("totem.cluster_name", "cluster-restart"),
    ("totem.ip_version", "cluster-restart"), ("totem.netmtu", "cluster-restart"),
    ("totem.crypto_cipher", "cluster-restart"), ("totem.crypto_hash", "cluster-restart"),
    ("totem.crypto_model", "cluster-restart"), ("totem.secauth", "cluster-restart"),
    ("totem.keyfile", "cluster-restart"), ("totem.interface[linknumber=0].mcastport", "cluster-restart"),
    ("quorum.wait_for_all", "cluster-restart"), ("quorum.last_man_standing", "cluster-restart"),
    ("quorum.auto_tie_breaker", "cluster-restart"), ("quorum.provider", "cluster-restart"),
    ("totem.threads", "rolling-restart"), ("system.sched_rr", "rolling-restart"),
    ("totem.version", "rolling-restart"),
])
def test_classification_table(path: str, cls: str) -> None:
    assert classify(path) == cls


def test_diff_of_real_pcs_configs_adding_qdevice() -> None:
    prefix = "pcs-0.9.170__pcs_test_resources_corosync-3nodes"
    old = parse_corosync((CORPUS / f"{prefix}.conf").read_text())
    new = parse_corosync((CORPUS / f"{prefix}-qdevice.conf").read_text())
    changes = diff_corosync(old, new)
    assert changes, "the qdevice file adds a quorum.device section"
    assert all(c.path.startswith("quorum.device.") and c.old is None for c in changes)
    assert {c.change_class for c in changes} == {"cluster-restart"}
    assert diff_corosync(new, old)[0].new is None


def test_diff_of_real_crmsh_configs_mixes_classes() -> None:
    old = parse_corosync((CORPUS / "crmsh-e81d3594parent__corosync.conf.2").read_text())
    new = parse_corosync((CORPUS / "crmsh-e81d3594parent__corosync.conf.3").read_text())
    by_path = {c.path: c for c in diff_corosync(old, new)}
    assert by_path["totem.token"].change_class == "reload"
    assert by_path["totem.crypto_cipher"].change_class == "cluster-restart"
    assert by_path["totem.interface[linknumber=0].bindnetaddr"].old == "10.16.35.0"
    assert by_path["logging.to_logfile"].change_class == "reload"
    assert highest_class(list(by_path.values())) == "cluster-restart"


def test_reordered_nodes_and_reformatting_are_no_change() -> None:
    old = ("nodelist {\n node {\n  nodeid: 1\n  ring0_addr: a\n }\n"
           " node {\n  nodeid: 2\n  ring0_addr: b\n }\n}\n")
    new = ("# reordered\nnodelist {\n\tnode {\n\t\tring0_addr: b\n\t\tnodeid: 2\n\t}\n\n"
           "\tnode {\n\t\tnodeid: 1\n\t\tring0_addr: a\n\t}\n}\n")
    assert diff_corosync(parse_corosync(old), parse_corosync(new)) == []
    changed = new.replace("ring0_addr: b", "ring0_addr: c")
    [change] = diff_corosync(parse_corosync(old), parse_corosync(changed))
    assert (change.path, change.old, change.new) == ("nodelist.node[nodeid=2].ring0_addr", "b", "c")


def test_nodes_without_nodeid_are_matched_by_address() -> None:
    base = (REPO / "desired" / "kamailio" / "corosync.conf").read_text()
    doc = parse_corosync(base)
    doc.set("nodelist.node[ring0_addr=10.220.1.22].name", "kamailio02")
    doc.delete("nodelist.node[ring0_addr=10.220.1.21]")
    changes = {c.path: c for c in diff_corosync(parse_corosync(base), doc)}
    assert changes["nodelist.node[ring0_addr=10.220.1.22].name"].new == "kamailio02"
    assert changes["nodelist.node[ring0_addr=10.220.1.21].ring0_addr"].new is None
    assert len(changes) == 2


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_cli_corosync_diff_exit_codes_and_json(tmp_path: Path) -> None:
    base = REPO / "desired" / "kamailio" / "corosync.conf"
    same = _cli("corosync", "diff", str(base), str(base), "--format", "json")
    assert (same.returncode, json.loads(same.stdout)) == (0, [])
    changed = tmp_path / "corosync.conf"
    changed.write_text(base.read_text().replace("cluster_name: kamailio", "cluster_name: other"))
    res = _cli("corosync", "diff", str(base), str(changed), "--format", "json")
    assert res.returncode == 1
    assert json.loads(res.stdout) == [
        {"path": "totem.cluster_name", "old": "kamailio", "new": "other", "class": "cluster-restart"}]
    text = _cli("corosync", "diff", str(base), str(changed))
    assert text.returncode == 1 and "cluster-restart" in text.stdout and "totem.cluster_name" in text.stdout
    broken = tmp_path / "broken.conf"
    broken.write_text("totem {\n  token: 1\n")
    bad = _cli("corosync", "diff", str(base), str(broken))
    assert bad.returncode == 2
    assert f"{broken}:1" in bad.stderr
