"""What `preview --base/--head` read: a desired folder, or a folder as of a git revision of a checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click
import pytest

from controller.cli.preview import default_path, resolve_side
from controller.errors import InputError
from controller.source.local import PrivateRepo, read_revision_folder
from tests.conftest import REFERENCE


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A user's checkout: desired/kamailio committed, then a stickiness change committed on top."""
    repo = PrivateRepo(tmp_path / "checkout")
    files = {p.name: p.read_text() for p in REFERENCE.iterdir() if p.is_file()}
    repo.commit("desired/kamailio", files, "initial")
    (repo.path / "desired" / "notes").mkdir()
    (repo.path / "desired" / "notes" / "x.txt").write_text("not a desired file\n")
    repo.commit("desired/kamailio", {**files, "cib.crm": files["cib.crm"].replace(
        "resource-stickiness=100", "resource-stickiness=200")}, "stickiness 200")
    return repo.path


def test_a_revision_reads_the_folder_as_it_was(checkout: Path) -> None:
    sha, old = read_revision_folder(checkout, "HEAD~1", "desired/kamailio")
    assert sha == git(checkout, "rev-parse", "HEAD~1")
    assert set(old) == {p.name for p in REFERENCE.iterdir() if p.is_file()}
    assert "resource-stickiness=100" in old["cib.crm"]
    _, new = read_revision_folder(checkout, "main", "desired/kamailio/")
    assert "resource-stickiness=200" in new["cib.crm"]


def test_an_unknown_revision_or_an_empty_folder_is_an_error_naming_it(checkout: Path) -> None:
    with pytest.raises(InputError, match="no-such-rev"):
        read_revision_folder(checkout, "no-such-rev", "desired/kamailio")
    with pytest.raises(InputError, match="no files in desired/nothing"):
        read_revision_folder(checkout, "HEAD", "desired/nothing")


def test_a_folder_beside_a_revision_names_the_revisions_folder(checkout: Path) -> None:
    folder = checkout / "desired" / "kamailio"
    assert default_path(str(folder), "HEAD~1", checkout) == "desired/kamailio"
    label, files = resolve_side("HEAD~1", checkout, "desired/kamailio")
    assert label.startswith("HEAD~1 (") and label.endswith(":desired/kamailio)")
    assert "resource-stickiness=100" in files["cib.crm"]
    label, files = resolve_side(str(folder), checkout, None)
    assert label == str(folder) and "resource-stickiness=200" in files["cib.crm"]


def test_a_revision_without_a_path_is_a_usage_error(checkout: Path) -> None:
    assert default_path("HEAD", "HEAD~1", checkout) is None
    with pytest.raises(click.UsageError, match="--path"):
        resolve_side("HEAD~1", checkout, None)


def test_the_private_repository_drops_files_the_next_state_does_not_have(tmp_path: Path) -> None:
    repo = PrivateRepo(tmp_path / "r")
    first = repo.commit("cluster", {"corosync.conf": "a\n", "cluster.toml": "\n"}, "one")
    second = repo.commit("cluster", {"corosync.conf": "b\n"}, "two")
    assert first != second
    assert git(repo.path, "ls-tree", "--name-only", "-r", "HEAD") == "cluster/corosync.conf"


def test_preview_wants_exactly_one_of_base_and_snapshot(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from controller.cli import main

    snap = tmp_path / "s.json"
    snap.write_text("{}")
    for args in ([], ["--base", str(REFERENCE), "--snapshot", str(snap)]):
        r = CliRunner().invoke(main, ["preview", "--head", str(REFERENCE), *args])
        assert r.exit_code == 2 and "exactly one" in r.output, r.output
