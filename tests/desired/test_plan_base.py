"""What a pull request changes, without a cluster: `plan --dir DIR --base REV` (the folder against itself
at a git revision) and `cib diff` on crm syntax. Runs crmsh: marked slow (tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from controller.command import Result, run
from tests.conftest import REFERENCE

HA_GITOPS = str(Path(sys.executable).with_name("ha-gitops"))


def ha(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd)}
    return run([HA_GITOPS, *args], timeout=180, check=False, cwd=str(cwd), env={**base, **(env or {})})


def git(cwd: Path, *args: str) -> str:
    return run(["git", "-C", str(cwd), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
               timeout=30).stdout.strip()


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    """A git work tree whose desired/kamailio is the reference cluster, committed."""
    tree = tmp_path / "repo"
    shutil.copytree(REFERENCE, tree / "desired" / "kamailio")
    git(tree.parent, "init", "-q", "-b", "main", str(tree))
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "base")
    return tree


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def plan_base(tree: Path, rev: str = "HEAD") -> tuple[int, dict]:
    r = ha("plan", "--dir", "desired/kamailio", "--base", rev, "--format", "json", cwd=tree)
    assert r.returncode in (0, 1, 3), r.stdout + r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_pull_request_planned_against_its_base(work_tree: Path) -> None:
    folder = work_tree / "desired" / "kamailio"
    code, data = plan_base(work_tree)
    assert (code, data["verdict"], data["plan"]["cib_changes"], data["plan"]["corosync_changes"]) == \
        (0, "no-change", [], [])
    edit(folder / "cib.crm", "resource-stickiness=100", "resource-stickiness=110")
    edit(folder / "corosync.conf", "token: 3000", "token: 3250")
    code, data = plan_base(work_tree)
    assert (code, data["verdict"], data["exit_code"]) == (1, "apply", 1)
    assert [(c["kind"], c["id"], c["action"]) for c in data["plan"]["cib_changes"]] == [
        ("rsc_default", "resource-stickiness", "changed")]
    assert [(c["path"], c["old"], c["new"], c["class"] if "class" in c else c["change_class"])
            for c in data["plan"]["corosync_changes"]] == [("totem.token", "3000", "3250", "reload")]
    assert any("not with a cluster" in n for n in data["plan"]["notes"])
    # Committed, the change is what HEAD~1 -> HEAD does; against HEAD nothing is left.
    git(work_tree, "commit", "-qam", "stickiness and token")
    assert plan_base(work_tree, "HEAD~1")[0] == 1
    assert plan_base(work_tree)[0] == 0
    r = ha("plan", "--dir", "desired/kamailio", "--base", "HEAD~1", cwd=work_tree)
    assert r.returncode == 1 and "resource-stickiness" in r.stdout and "totem.token: 3000 -> 3250" in r.stdout


def test_a_pull_request_the_agents_would_refuse_exits_3(work_tree: Path) -> None:
    folder = work_tree / "desired" / "kamailio"
    crm = (folder / "cib.crm").read_text()
    (folder / "cib.crm").write_text(crm + "primitve broken-typo Dummy\n")
    code, data = plan_base(work_tree)
    assert (code, [r["code"] for r in data["reasons"]]) == (3, ["invalid"])
    (folder / "cib.crm").write_text(crm)
    # A cluster_name change restarts the whole cluster: refused unless cluster.toml allows it.
    edit(folder / "corosync.conf", "cluster_name: kamailio", "cluster_name: kamailio2")
    code, data = plan_base(work_tree)
    assert code == 3 and data["plan"]["corosync_class"] == "cluster-restart"
    assert [v["rule"] for v in data["reasons"][0]["violations"]] == ["allow_cluster_restart"]


def test_a_bad_base_is_an_error(work_tree: Path) -> None:
    r = ha("plan", "--dir", "desired/kamailio", "--base", "no-such-rev", cwd=work_tree)
    assert r.returncode == 2 and "no-such-rev" in r.stderr
    r = ha("plan", "--base", "HEAD", cwd=work_tree, env={"HA_GITOPS_CONFIG": str(work_tree / "none.toml")})
    assert r.returncode == 2, r.stdout + r.stderr
    (work_tree / "none.toml").write_text("")
    r = ha("plan", "--base", "HEAD", cwd=work_tree, env={"HA_GITOPS_CONFIG": str(work_tree / "none.toml")})
    assert r.returncode == 2 and "repo_url is not set" in r.stderr, r.stderr


def test_the_configured_repository_tip_against_a_revision(work_tree: Path, tmp_path: Path) -> None:
    """Without --dir: the branch the agents follow, its tip against REV (a clone of its own)."""
    edit(work_tree / "desired" / "kamailio" / "cib.crm", "resource-stickiness=100", "resource-stickiness=120")
    git(work_tree, "commit", "-qam", "stickiness 120")
    (tmp_path / "agent.toml").write_text(f'repo_url = "{work_tree}"\nbranch = "main"\n'
                                         'path = "desired/kamailio"\n')
    env = {"HA_GITOPS_CONFIG": str(tmp_path / "agent.toml")}
    r = ha("plan", "--base", "HEAD~1", "--format", "json", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["basis"]["revision"] == git(work_tree, "rev-parse", "HEAD")
    assert [c["id"] for c in data["plan"]["cib_changes"]] == ["resource-stickiness"]
    r = ha("plan", "--base", "main", "--format", "json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ha("plan", "--base", "nope", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "no such revision" in r.stderr, r.stderr


def test_cib_diff_reads_crm_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.crm", tmp_path / "b.crm"
    crm = (REFERENCE / "cib.crm").read_text()
    a.write_text(crm)
    b.write_text(crm.replace("resource-stickiness=100", "resource-stickiness=110"))
    r = ha("cib", "diff", str(a), str(b), "--format", "text", cwd=tmp_path)
    assert r.returncode == 1 and "resource-stickiness" in r.stdout and "100 -> 110" in r.stdout, r.stderr
    r = ha("cib", "diff", str(a), str(a), cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "")
    # crm syntax against the XML crmsh makes of it: the same configuration.
    from controller.desired.crm import crm_to_configuration

    xml = tmp_path / "a.xml"
    xml.write_bytes(crm_to_configuration(crm).configuration)
    r = ha("cib", "diff", str(a), str(xml), "--semantic", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ha("cib", "diff", str(a), str(xml), "--semantic", "--format", "text", cwd=tmp_path)
    assert r.returncode == 0
    bad = tmp_path / "bad.crm"
    bad.write_text("primitve x Dummy\n")
    r = ha("cib", "diff", str(a), str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "primitve" in r.stderr, r.stdout + r.stderr
