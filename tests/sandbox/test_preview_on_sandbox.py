"""`ha-gitops preview` on the real sandbox: a clean change is applied and verified (exit 1), a failing one
is rolled back (exit 3, posted by the CI step as it runs in CI), and nothing is left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from controller.sandbox.manager import Sandbox
from tests.ci.forge_double import CI_DIR, forge_server, github_env
from tests.conftest import REFERENCE, REPO, need_root, sandbox_state

BAD_DUMMY = ("primitive DUMMY-BAD ocf:pacemaker:Dummy params state=/nonexistent/dir/state "
             "meta migration-threshold=1 \\\n\top monitor interval=10s timeout=20s\n")


def head_folder(tmp_path: Path, name: str, edit: str, add: str = "") -> Path:
    folder = tmp_path / name
    shutil.copytree(REFERENCE, folder)
    crm = folder / "cib.crm"
    text = crm.read_text()
    assert edit in text
    crm.write_text(text.replace(edit, edit.replace("100", "200")) + add)
    return folder


def fresh(state: str) -> None:
    """Whatever an interrupted run left in the state directory: down, then gone."""
    Sandbox(Path(state) / "sandbox").down()
    shutil.rmtree(state, ignore_errors=True)


def assert_nothing_left(state: str) -> None:
    assert not Path(state).exists(), f"{state} left behind"
    left = Sandbox(Path(state) / "sandbox").leftovers()
    assert left == {"processes": [], "netns": [], "mounts": []}, left


def test_a_clean_change_is_applied_and_verified(tmp_path: Path) -> None:
    need_root()
    state = sandbox_state("preview")
    fresh(state)
    head = head_folder(tmp_path, "stickiness", "resource-stickiness=100")
    r = subprocess.run([sys.executable, "-m", "controller.cli", "preview", "--base", str(REFERENCE), "--head",
                        str(head), "--format", "json", "--state-dir", state], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert (report["outcome"], report["exit_code"], report["agrees"]) == ("applied", 1, True)
    assert report["plan"]["verdict"] == "apply"
    assert any(c["id"] == "rsc-options" or "stickiness" in json.dumps(c)
               for c in report["plan"]["plan"]["cib_changes"])
    assert report["verify"].startswith("healthy")
    assert [e["kind"] for e in report["events"] if e["kind"] == "apply"] == ["apply"]
    assert report["fencing"] == [] and report["rollout"] == [] and report["health"] == []
    assert report["leftovers"] == {}
    for phase in ("sandbox_up", "initial_sync", "plan", "commit_to_verdict", "commit_to_apply", "teardown",
                  "total"):
        assert report["timings"][phase] > 0, phase
    assert "write" in report["agent_timings"]
    assert "resource-stickiness" in report["crm_mon"] or "Cluster Summary" in report["crm_mon"]
    assert_nothing_left(state)


def test_a_failing_change_is_rolled_back_and_the_ci_step_posts_it(tmp_path: Path) -> None:
    need_root()
    state = sandbox_state("preview-bad")
    fresh(state)
    head = head_folder(tmp_path, "bad", "resource-stickiness=100", BAD_DUMMY)
    with forge_server() as (forge, url):
        r = subprocess.run(
            [sys.executable, str(CI_DIR / "review.py"), "--ha-gitops", f"{sys.executable} -m controller.cli",
             "--dir", str(head), "--base", str(REFERENCE), "--forge", "github", "--number", "7",
             "--out", str(tmp_path / "review.md")],
            capture_output=True, text=True, timeout=900, cwd=REPO,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
                 "HA_GITOPS_PREVIEW_STATE_DIR": state, **github_env(url)})
        assert r.returncode == 3, r.stdout[-4000:] + r.stderr[-4000:]
        [comment] = forge.bodies("github:ops/cluster#7")
    assert "### validate: valid" in comment
    assert "⛔ **rolled-back**" in comment and "the sandbox DIFFERS: rolled-back (exit 3)" in comment
    assert "DUMMY-BAD" in comment and "auto-rollback" in comment
    assert_nothing_left(state)
