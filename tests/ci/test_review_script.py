"""deploy/ci/review.py, the step both CI files run, run here as CI runs it (validate, the comment; the
preview half is run on the sandbox by tests/sandbox/test_preview_on_sandbox.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.ci.forge_double import CI_DIR, forge_server, github_env
from tests.conftest import REFERENCE, REPO

HA_GITOPS = f"{sys.executable} -m controller.cli"


def review(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CI_DIR / "review.py"), "--ha-gitops", HA_GITOPS, *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), **env})


def test_a_valid_folder_then_an_invalid_one_update_one_comment(tmp_path: Path) -> None:
    folder = tmp_path / "kamailio"
    shutil.copytree(REFERENCE, folder)
    with forge_server() as (forge, url):
        r = review(github_env(url), "--dir", str(folder), "--no-preview", "--forge", "github",
                   "--number", "7", cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        [first] = forge.bodies("github:ops/cluster#7")
        assert first.startswith("<!-- ha-gitops-plan -->\n## ha-gitops review of")
        assert "### validate: valid" in first and "### preview: not run (--no-preview)" in first
        assert (tmp_path / "ha-gitops-review.md").read_text() == first

        crm = folder / "cib.crm"
        crm.write_text(crm.read_text() + "colocation C-NOPE inf: NOPE PROXY01\n")
        r = review(github_env(url), "--dir", str(folder), "--forge", "github", "--number", "7", cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        [second] = forge.bodies("github:ops/cluster#7")
        assert "### validate: INVALID" in second and "NOPE" in second
        assert "### preview: not run (the folder is invalid)" in second
