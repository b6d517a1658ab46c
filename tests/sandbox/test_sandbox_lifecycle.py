"""up/down/up works repeatedly and down leaves nothing behind; the CLI speaks for the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.sandbox.manager import Sandbox
from tests.conftest import REFERENCE, need_root, sandbox_state

pytestmark = pytest.mark.sandbox

STATE = sandbox_state("cycles")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"HA_GITOPS_SANDBOX_DIR": STATE, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True,
                          timeout=180, env=env)


def test_five_up_down_cycles_leave_nothing_behind() -> None:
    need_root()
    sb = Sandbox(STATE)
    sb.down()
    for _ in range(5):
        result = sb.up(REFERENCE, timeout=90)
        assert result.dc in result.nodes
        assert sb.leftovers()["netns"], "a running sandbox has namespaces"
        recorded = sb.leftovers()["processes"]
        assert len(recorded) == 4  # supervisor + one PID 1 per node
        sb.down()
        assert sb.leftovers() == {"processes": [], "netns": [], "mounts": []}
        assert not sb.layout.root.exists()


def test_cli_up_status_exec_down() -> None:
    need_root()
    up = cli("sandbox", "up", "--cluster", str(REFERENCE))
    try:
        assert up.returncode == 0, up.stderr
        assert "quorate, DC kamailio0" in up.stdout
        st = cli("sandbox", "status", "--format", "json")
        data = json.loads(st.stdout)
        assert data["quorate"] is True and [n["name"] for n in data["nodes"] if n["cluster_online"]] == [
            "kamailio01", "kamailio02", "kamailio03"]
        ex = cli("sandbox", "exec", "kamailio02", "--", "corosync-cmapctl", "-g", "totem.cluster_name")
        assert ex.returncode == 0 and "kamailio" in ex.stdout
        bad = cli("sandbox", "exec", "kamailio09", "--", "true")
        assert bad.returncode == 2 and "no node 'kamailio09'" in bad.stderr
    finally:
        down = cli("sandbox", "down", "--keep-logs")
    assert down.returncode == 0, down.stderr
    assert Sandbox(STATE).leftovers() == {"processes": [], "netns": [], "mounts": []}
    # --keep-logs keeps the node logs and nothing else.
    kept = Sandbox(STATE).layout.node_dir("kamailio01")
    assert (kept / "var-log-pacemaker" / "pacemaker.log").exists()
    assert not (kept / "var-lib-pacemaker").exists()
    Sandbox(STATE).down()


def test_up_timeout_names_the_log_files(tmp_path: Path) -> None:
    need_root()
    # A cluster folder whose nodes can never form quorum: corosync refuses an unknown transport.
    folder = tmp_path / "broken"
    folder.mkdir()
    conf = (REFERENCE / "corosync.conf").read_text().replace("transport: udpu", "transport: nosuch")
    (folder / "corosync.conf").write_text(conf)
    (folder / "cib.crm").write_text((REFERENCE / "cib.crm").read_text())
    sb = Sandbox(STATE)
    try:
        with pytest.raises(Exception) as err:
            sb.up(folder, timeout=8)
        msg = str(err.value)
        assert "not quorate" in msg and "corosync.out" in msg and "pacemaker.log" in msg
    finally:
        sb.down()
    assert sb.leftovers() == {"processes": [], "netns": [], "mounts": []}
