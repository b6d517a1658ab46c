"""Fault points announce a pause while it lasts, so a rehearsal acts once the agent is really held."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from controller import faults


def test_a_pause_is_announced_beside_the_fault_file_while_it_lasts(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fault_file = tmp_path / "faults.json"
    fault_file.write_text(json.dumps({"before-patch": 0.6}))
    monkeypatch.setenv("HA_GITOPS_FAULT_FILE", str(fault_file))
    paused = tmp_path / "faults.json.paused"
    seen: list[dict[str, object]] = []
    t = threading.Thread(target=lambda: faults.pause("before-patch"))
    t.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        if paused.exists():
            seen.append(json.loads(paused.read_text()))
        time.sleep(0.02)
    t.join()
    assert seen and seen[0]["point"] == "before-patch" and seen[0]["seconds"] == 0.6
    assert not paused.exists()  # gone once the pause is over
    assert faults.pause("after-write") == 0.0 and not paused.exists()  # not asked for: no pause, no file
