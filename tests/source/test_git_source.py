"""The git source on real repositories: follow a branch, skip unrelated commits, survive force-pushes,
an unreachable remote and a corrupt cache; export the cluster folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.source.git import GitSource, SourceError
from controller.source.models import ChangedFile, SignatureStatus
from tests.source.sourcetestlib import CLUSTER, Upstream, git

MakeSource = Callable[..., GitSource]


def test_clone_follows_branch_and_picks_up_new_commit(upstream: Upstream, make_source: MakeSource,
                                                      tmp_path: Path) -> None:
    src = make_source(str(upstream.bare))
    first = src.sync()
    assert first.ok and first.recloned and first.folder_changed and not first.refused
    assert first.revision is not None
    assert first.revision.sha == upstream.tip()
    assert first.revision.author == "Ada Admin <ada@example.org>"
    assert first.revision.summary == "initial"
    assert first.revision.signature is SignatureStatus.NOT_CHECKED
    assert first.revision.committed_at.tzinfo is not None
    assert (src.git_dir / "HEAD").is_file() and not (src.git_dir / "index").exists()  # bare

    again = src.sync()
    assert again.ok and not again.moved and not again.folder_changed and not again.recloned

    sha = upstream.commit({"cluster/cib.crm": "property cib-bootstrap-options: stonith-enabled=true\n"},
                          "enable stonith")
    res = src.sync()
    assert res.ok and res.moved and res.folder_changed and not res.forced
    assert res.revision is not None and res.revision.sha == sha
    assert res.previous_sha == first.revision.sha
    assert res.revision.changed_files == [ChangedFile(path="cib.crm", change="modified")]
    assert src.read_folder(sha)["cib.crm"].endswith(b"stonith-enabled=true\n")
    # Rollback needs earlier content too.
    assert src.read_folder(first.revision.sha)["cib.crm"].endswith(b"stonith-enabled=false\n")


def test_commit_outside_cluster_folder_causes_no_work(upstream: Upstream, make_source: MakeSource) -> None:
    src = make_source(f"file://{upstream.bare}")
    base = src.sync().revision
    assert base is not None
    sha = upstream.commit({"README.md": "more docs\n", "other/corosync.conf": "x\n"}, "docs only")
    res = src.sync()
    assert res.ok and res.moved and not res.folder_changed
    assert res.revision is not None and res.revision.sha == sha
    assert res.revision.changed_files == []
    assert res.revision.folder_tree == base.folder_tree
    assert not src.folder_changed(base.sha, sha)
    # Adding and deleting files inside the folder is work, named per file.
    sha2 = upstream.commit({"cluster/cib.xml": "<cib/>\n", "cluster/cib.crm": None}, "crm -> xml")
    assert src.sync().folder_changed
    assert src.folder_changed(sha, sha2) and src.folder_changed(None, sha2)
    assert sorted(src.changed_files(sha, sha2), key=lambda c: c.path) == [
        ChangedFile(path="cib.crm", change="deleted"), ChangedFile(path="cib.xml", change="added")]


def test_force_push_is_followed(upstream: Upstream, make_source: MakeSource) -> None:
    src = make_source(str(upstream.bare))
    src.sync()
    bad = upstream.commit({"cluster/cib.crm": "broken\n"}, "oops")
    assert src.sync().revision.sha == bad
    upstream.reset_hard("HEAD~1")
    fixed = upstream.commit({"cluster/cib.crm": "fixed\n"}, "rewritten", push=False)
    upstream.push(force=True)
    res = src.sync()
    assert res.ok and res.moved and res.forced and res.folder_changed
    assert res.revision is not None and res.revision.sha == fixed
    assert git("--git-dir", str(src.git_dir), "rev-parse", "refs/heads/main") == fixed  # reset, no merge
    assert src.read_folder(fixed)["cib.crm"] == b"fixed\n"
    assert src.read_folder(bad)["cib.crm"] == b"broken\n"  # the rewritten-away commit is still readable


def test_unreachable_remote_keeps_last_good_then_recovers(upstream: Upstream, make_source: MakeSource,
                                                          tmp_path: Path) -> None:
    src = make_source(str(upstream.bare))
    good = src.sync().revision
    assert good is not None
    hidden = tmp_path / "hidden.git"
    upstream.bare.rename(hidden)
    res = src.sync()
    assert not res.ok and not res.skipped
    assert res.error is not None and "cannot fetch" in res.error and str(upstream.bare) in res.error
    assert res.revision == good and src.last_good == good
    assert res.retry_in is not None and 0.8 <= res.retry_in <= 1.0  # retry_initial 1s, up to 20% jitter
    # Within the backoff window nothing is fetched; the error and the last good revision are reported.
    waiting = src.sync()
    assert waiting.skipped and waiting.error == res.error and waiting.revision == good
    failed_again = src.sync(force=True)
    assert not failed_again.ok and failed_again.retry_in is not None and failed_again.retry_in > 1.5
    # The cache still serves the last good revision.
    assert src.read_folder(good.sha)["corosync.conf"].startswith(b"totem")

    hidden.rename(upstream.bare)
    sha = upstream.commit({"cluster/cluster.toml": "[cluster]\nname = \"demo2\"\n"}, "rename")
    back = src.sync(force=True)
    assert back.ok and back.error is None and back.retry_in is None and back.folder_changed
    assert back.revision is not None and back.revision.sha == sha
    assert not src.sync().skipped  # backoff reset


def test_missing_branch_is_an_error(upstream: Upstream, make_source: MakeSource) -> None:
    src = make_source(str(upstream.bare), branch="nope")
    res = src.sync()
    assert not res.ok and res.revision is None
    assert res.error is not None and "branch 'nope' does not exist" in res.error


@pytest.mark.parametrize("damage", ["objects-deleted", "garbage-head", "garbage-object", "not-a-repo"])
def test_corrupt_cache_is_recloned(upstream: Upstream, make_source: MakeSource, damage: str) -> None:
    src = make_source(str(upstream.bare))
    first = src.sync().revision
    assert first is not None
    src.close()
    objects = src.git_dir / "objects"
    if damage == "objects-deleted":
        for d in objects.iterdir():
            if len(d.name) == 2 or d.name == "pack":
                shutil.rmtree(d)
    elif damage == "garbage-head":
        (src.git_dir / "HEAD").write_text("garbage\n")
        (src.git_dir / "config").write_text("[[[ garbage\n")
    elif damage == "garbage-object":
        blob = git("--git-dir", str(src.git_dir), "rev-parse", f"{first.sha}:cluster/cib.crm")
        path = objects / blob[:2] / blob[2:]
        path.chmod(0o644)
        path.write_bytes(b"\x00garbage")
    else:
        shutil.rmtree(src.git_dir)
        src.git_dir.mkdir()
        (src.git_dir / "junk").write_text("x")
    res = src.sync()
    assert res.ok and res.recloned, res
    assert res.revision is not None and res.revision.sha == first.sha
    assert src.read_folder(first.sha)["cib.crm"] == CLUSTER["cluster/cib.crm"].encode()
    assert git("--git-dir", str(src.git_dir), "fsck", "--no-progress") == ""
    assert not [p for p in src.config.cache_dir.iterdir() if p.name.startswith(".git-")]  # no leftovers


def test_export_writes_the_folder_atomically(upstream: Upstream, make_source: MakeSource,
                                             tmp_path: Path) -> None:
    upstream.commit({"cluster/sub/hook.sh": "#!/bin/sh\n"}, "nested")
    (upstream.work / "cluster" / "sub" / "hook.sh").chmod(0o755)
    sha = upstream.commit({}, "exec bit")
    src = make_source(str(upstream.bare))
    src.sync()
    dest = src.export(sha, tmp_path / "exports" / sha)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "cib.crm", "cluster.toml", "corosync.conf", "sub/hook.sh"]
    assert (dest / "corosync.conf").read_text() == CLUSTER["cluster/corosync.conf"]
    assert (dest / "sub" / "hook.sh").stat().st_mode & 0o111
    assert not (dest / "cib.crm").stat().st_mode & 0o111
    assert [p.name for p in dest.parent.iterdir()] == [sha]  # no temporary left
    with pytest.raises(SourceError, match="already exists"):
        src.export(sha, dest)


def test_symlink_in_folder_is_refused(upstream: Upstream, make_source: MakeSource, tmp_path: Path) -> None:
    (upstream.work / "cluster" / "cib.xml").symlink_to("/etc/shadow")
    sha = upstream.commit({}, "sneaky")
    src = make_source(str(upstream.bare))
    src.sync()
    with pytest.raises(SourceError, match="symlinks and submodules are not allowed"):
        src.export(sha, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_absent_at_a_revision(upstream: Upstream, make_source: MakeSource) -> None:
    src = make_source(str(upstream.bare))
    src.sync()
    sha = upstream.commit({k: None for k in CLUSTER}, "remove the folder")
    res = src.sync()
    assert res.folder_changed and res.revision is not None and res.revision.folder_tree is None
    with pytest.raises(SourceError, match="does not exist"):
        src.read_folder(sha)
