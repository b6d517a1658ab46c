"""`ha-gitops notify test`: one message per target, sent now, to a real HTTP receiver on loopback; a target
nothing listens on is reported by name with exit 2, and its URL's credential is never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import free_port
from tests.notify_receiver import Receiver


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "notify", "test", "--config", str(config),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def _config(tmp_path: Path, targets: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'repo_url = "file:///nonexistent"\nnode_name = "kamailio02"\n{targets}')
    return path


def test_each_target_gets_one_message_and_a_dead_one_is_named(tmp_path: Path, receiver: Receiver) -> None:
    dead = free_port()  # nothing listens there
    config = _config(tmp_path, f'''
[[notify]]
name = "ops"
url = "json://127.0.0.1:{receiver.port}/hook"

[[notify]]
name = "pager"
url = "json://user:hunter2secret@127.0.0.1:{dead}/x"
timeout = 3
''')
    r = _cli(config)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ops: delivered"
    assert lines[1].startswith("pager: FAILED")
    assert "hunter2secret" not in r.stdout + r.stderr
    got = receiver.messages()
    assert len(got) == 1 and got[0]["_path"] == "/hook"
    assert got[0]["title"] == "ha-gitops: test notification from kamailio02"
    assert "Nothing happened to the cluster" in got[0]["message"]

    r = _cli(config, "--target", "ops", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["results"] == [{"target": "ops", "error": None, "delivered": True}]
    assert len(receiver.messages()) == 2


def test_no_target_or_an_unknown_one_is_an_error(tmp_path: Path) -> None:
    r = _cli(_config(tmp_path, ""))
    assert r.returncode == 2 and "no [[notify]] target" in r.stderr
    config = _config(tmp_path, '[[notify]]\nname = "ops"\nurl = "json://127.0.0.1:9/x"\n')
    r = _cli(config, "--target", "nope")
    assert r.returncode == 2 and "no notify target named nope (configured: ops)" in r.stderr
