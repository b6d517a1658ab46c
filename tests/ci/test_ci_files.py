"""The CI files: clean for Debian's YAML linter, and both run the one review script the tests run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci.forge_double import CI_DIR

CI_FILES = [CI_DIR / "github-workflow.yml", CI_DIR / "gitlab-ci.yml"]


def test_yamllint_passes_on_the_ci_files() -> None:
    if shutil.which("yamllint") is None:
        pytest.fail("yamllint is not installed: `make setup` installs it (deploy/install-debian-packages.sh)")
    r = subprocess.run(["yamllint", "-s", "-f", "parsable", "-c", str(CI_DIR / "yamllint.yml"),
                        *map(str, CI_FILES)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_yamllint_would_catch_a_broken_file(tmp_path: Path) -> None:
    broken = CI_FILES[0].read_text().replace("  review:\n", "  review:\n   bad-indent: 1\n", 1)
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    r = subprocess.run(["yamllint", "-s", "-c", str(CI_DIR / "yamllint.yml"), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def _review_command(text: str) -> list[str]:
    """The review.py invocation of a CI file, as its flags (the folded command joined up)."""
    m = re.search(r"review\.py(?P<args>(?:\s+\S.*?)+?)\n(?!\s+--|\s+\$\{)", text, re.S)
    assert m, "no deploy/ci/review.py step"
    return re.findall(r"--[a-z-]+", m["args"])


def test_both_ci_files_run_review_py_with_the_same_steps() -> None:
    github, gitlab = (_review_command(p.read_text()) for p in CI_FILES)
    assert github[:-1] == gitlab[:-1] == ["--dir", "--base", "--snapshot", "--ha-gitops"]
    assert (github[-1], gitlab[-1]) == ("--forge", "--forge")
    assert "--forge github" in CI_FILES[0].read_text() and "--forge gitlab" in CI_FILES[1].read_text()
    assert "pull-requests: write" in CI_FILES[0].read_text()
    assert "merge_request_event" in CI_FILES[1].read_text()
