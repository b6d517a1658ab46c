"""The agent's warm crmsh: what a new crm process gives, through everything that can go wrong with a
long-lived helper (a command that overruns, the server killed, the server starting afresh when idle, a
broken interpreter), and without leaving crmsh's temporary files behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.desired.crm import crm_to_configuration, empty_cib
from controller.desired.crm_worker import WarmCrm, crmsh_interpreter
from controller.errors import CommandError
from tests.desired.desiredtestlib import KAMAILIO

TEXT = (KAMAILIO / "cib.crm").read_text()


def _variant(n: int) -> str:
    return TEXT.replace("resource-stickiness=100", f"resource-stickiness={n}")


@pytest.fixture()
def warm() -> Iterator[WarmCrm]:
    worker = WarmCrm()
    yield worker
    worker.close()


def test_same_configuration_and_messages_as_a_new_crm_process(warm: WarmCrm) -> None:
    once = crm_to_configuration(_variant(5), use_cache=False)
    for _ in range(2):  # the second time with the metadata the first one cached
        got = crm_to_configuration(_variant(5), use_cache=False, runner=warm.run)
        assert got.configuration == once.configuration
        assert got.messages == once.messages
    assert b'name="resource-stickiness" value="5"' in got.configuration
    assert warm.started_count == 1


def test_a_command_that_overruns_is_killed_and_the_server_lives_on(warm: WarmCrm, tmp_path: Path) -> None:
    warm.start()
    pid = warm.pid
    crm_file = tmp_path / "in.crm"
    crm_file.write_text(TEXT)
    cib = tmp_path / "cib.xml"
    cib.write_text(empty_cib())
    with pytest.raises(CommandError, match="timed out"):
        warm.run(["crm", "-F", "configure", "load", "replace", str(crm_file)], timeout=0.05,
                 env={"CIB_file": str(cib), "HOME": str(tmp_path)}, check=False)
    assert warm.pid == pid
    assert b"resource-stickiness" in crm_to_configuration(_variant(6), use_cache=False,
                                                          runner=warm.run).configuration


def test_a_killed_server_is_started_again(warm: WarmCrm) -> None:
    warm.start()
    os.kill(warm.pid or 0, signal.SIGKILL)
    time.sleep(0.2)
    got = crm_to_configuration(_variant(7), use_cache=False, runner=warm.run)
    assert b'value="7"' in got.configuration
    assert warm.started_count == 2


def test_an_idle_server_starts_afresh_in_place_and_still_converts() -> None:
    worker = WarmCrm(max_age=1.0)
    try:
        worker.start()
        pid = worker.pid
        time.sleep(2.5)  # idle past max_age: the server re-executes itself (same PID, same pipes)
        got = crm_to_configuration(_variant(8), use_cache=False, runner=worker.run)
        assert b'value="8"' in got.configuration
        assert worker.fresh_starts >= 1 and worker.pid == pid and worker.started_count == 1
    finally:
        worker.close()


def test_without_a_working_interpreter_crm_runs_as_a_new_process() -> None:
    worker = WarmCrm(interpreter="/nonexistent/python3")
    try:
        got = crm_to_configuration(_variant(9), use_cache=False, runner=worker.run)
        assert b'value="9"' in got.configuration
        assert worker.pid is None
    finally:
        worker.close()


def test_crmsh_temporary_files_are_removed(warm: WarmCrm, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    crm_file = tmp_path / "in.crm"
    crm_file.write_text(TEXT)
    cib = tmp_path / "cib.xml"
    cib.write_text(empty_cib())
    r = warm.run(["crm", "-F", "configure", "load", "replace", str(crm_file)], timeout=60,
                 env={"CIB_file": str(cib), "HOME": str(tmp_path), "TMPDIR": str(scratch)}, check=False)
    assert r.returncode == 0, r.stderr
    assert b"KAMAILIO01" in cib.read_bytes()
    assert list(scratch.iterdir()) == []


def test_closing_stops_the_server_until_it_is_opened_again(warm: WarmCrm) -> None:
    warm.start()
    pid = warm.pid
    assert pid is not None and Path(f"/proc/{pid}").exists()
    warm.close()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    # Closed: conversions still work, as new crm processes, and start no server behind the owner's back.
    assert b'value="11"' in crm_to_configuration(_variant(11), use_cache=False, runner=warm.run).configuration
    warm.start()
    assert warm.pid is None and warm.started_count == 1
    warm.open()
    warm.start()
    assert warm.pid is not None and warm.started_count == 2


def test_the_interpreter_is_the_one_crmsh_is_installed_for() -> None:
    r = subprocess.run([crmsh_interpreter(), "-I", "-c", "import crmsh.main"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
