"""deploy/ci/pr_comment.py keeps ONE marked comment per pull/merge request, against a loopback double of
the GitHub and GitLab APIs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pr_comment  # deploy/ci is on pytest's pythonpath (pyproject.toml)
import pytest

from tests.ci.forge_double import CI_DIR, forge_server, github_env, gitlab_env

GH, GL = "github:ops/cluster#7", "gitlab:42!7"


def run(forge: str, body: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CI_DIR / "pr_comment.py"), "--forge", forge, "--body",
                           str(body), *extra], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_github_creates_the_comment_once_then_edits_it(tmp_path: Path) -> None:
    body = tmp_path / "plan.md"
    with forge_server() as (forge, url):
        for i in range(150):  # two pages of other people's comments
            forge.add(GH, f"looks good {i}")
        body.write_text("first plan\n")
        r = run("github", body, github_env(url), "--number", "7")
        assert r.returncode == 0, r.stderr
        assert "created comment" in r.stdout
        body.write_text("second plan\n")
        r = run("github", body, github_env(url), "--number", "7")
        assert r.returncode == 0, r.stderr
        assert "updated comment" in r.stdout
        mine = [b for b in forge.bodies(GH) if pr_comment.MARKER in b]
        assert mine == [f"{pr_comment.MARKER}\nsecond plan\n"]
        assert len(forge.bodies(GH)) == 151
        assert ("GET", "/api/v3/repos/ops/cluster/issues/7/comments?per_page=100&page=2") in forge.requests
        assert any(m == "PATCH" for m, _ in forge.requests)


def test_github_finds_its_comment_on_a_later_page_and_reads_the_number_from_the_event(tmp_path: Path
                                                                                      ) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    body = tmp_path / "plan.md"
    body.write_text("new\n")
    with forge_server() as (forge, url):
        for i in range(120):
            forge.add(GH, f"comment {i}")
        mine = forge.add(GH, f"{pr_comment.MARKER}\nold")
        r = run("github", body, github_env(url) | {"GITHUB_EVENT_PATH": str(event)})
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"pr_comment: updated comment {mine}"
        assert [b for b in forge.bodies(GH) if "old" in b or "new" in b] == [f"{pr_comment.MARKER}\nnew\n"]


def test_gitlab_notes_are_created_then_edited_with_put(tmp_path: Path) -> None:
    body = tmp_path / "plan.md"
    with forge_server() as (forge, url):
        forge.add(GL, "a reviewer's note")
        body.write_text(f"{pr_comment.MARKER}\nplan one\n")  # a body carrying the marker keeps it once
        assert run("gitlab", body, gitlab_env(url)).returncode == 0
        body.write_text("plan two\n")
        r = run("gitlab", body, gitlab_env(url))
        assert r.returncode == 0, r.stderr
        assert forge.bodies(GL) == ["a reviewer's note", f"{pr_comment.MARKER}\nplan two\n"]
        assert ("PUT", "/api/v4/projects/42/merge_requests/7/notes/1002") in forge.requests


def test_a_refused_token_or_missing_setting_is_exit_2_with_the_forges_answer(tmp_path: Path) -> None:
    body = tmp_path / "plan.md"
    body.write_text("x\n")
    with forge_server() as (forge, url):
        r = run("github", body, github_env(url) | {"GITHUB_TOKEN": "wrong"}, "--number", "7")
        assert r.returncode == 2
        assert "HTTP 401" in r.stderr and "Bad credentials" in r.stderr
        r = run("gitlab", body, {k: v for k, v in gitlab_env(url).items() if k != "CI_PROJECT_ID"})
        assert r.returncode == 2 and "CI_PROJECT_ID is not set" in r.stderr
        assert forge.bodies(GH) == []


def test_upsert_in_process_says_what_it_did() -> None:
    with forge_server() as (_, url):
        f = pr_comment.forge_from_env("gitlab", None, gitlab_env(url))
        assert pr_comment.upsert(f, "one")[0] == "created"
        assert pr_comment.upsert(f, "two")[0] == "updated"
        with pytest.raises(pr_comment.ForgeError, match="unknown forge"):
            pr_comment.Forge("gitea", url, "x", 1, "t")
