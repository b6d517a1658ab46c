"""`plan --base REV`'s decision (pure): the head desired state against the one at REV, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from controller.decide import decide_against_base
from controller.desired.findings import Finding
from controller.desired.load import load_desired
from controller.plan import cib_plan, effective_desired

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CONF = ("totem {\n\tversion: 2\n\tcluster_name: c\n\ttransport: knet\n\ttoken: 3000\n}\n"
        "quorum {\n\tprovider: corosync_votequorum\n}\n"
        "nodelist {\n\tnode {\n\t\tring0_addr: 10.0.0.1\n\t\tnodeid: 1\n\t\tname: n1\n\t}\n}\n")
CIB = ('<configuration><crm_config/><nodes><node id="1" uname="n1"/></nodes><resources>{r}</resources>'
       '<constraints/></configuration>')
DUMMY = '<primitive id="d{i}" class="ocf" provider="pacemaker" type="Dummy"/>'


def folder(path: Path, *, resources: int = 2, token: str = "3000", name: str = "c", policy: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cib.xml").write_text(CIB.format(r="".join(DUMMY.format(i=i) for i in range(resources))))
    (path / "corosync.conf").write_text(CONF.replace("3000", token).replace("cluster_name: c",
                                                                            f"cluster_name: {name}"))
    if policy:
        (path / "cluster.toml").write_text(policy)
    return path


def decide(base: Path, head: Path, findings: list[Finding] | None = None):  # type: ignore[no-untyped-def]
    b, h = load_desired(base), load_desired(head)
    cib = cib_plan(h, effective_desired(b)[0])
    return decide_against_base(revision=None, base="main", state=h, findings=findings or [], cib=cib,
                               base_corosync=b.corosync_text, now=NOW)


def test_no_difference_is_no_change(tmp_path: Path) -> None:
    d = decide(folder(tmp_path / "a"), folder(tmp_path / "b"))
    assert (d.verdict, d.exit_code, d.plan.changed) == ("no-change", 0, False)
    assert d.basis.revision and d.basis.revision.startswith("digest:")


def test_changes_are_planned_with_their_class_and_no_impact(tmp_path: Path) -> None:
    d = decide(folder(tmp_path / "a"), folder(tmp_path / "b", resources=3, token="3250"))
    assert (d.verdict, d.exit_code) == ("apply", 1)
    assert [(c.id, c.action) for c in d.plan.cib_changes] == [("d2", "added")]
    assert [(c.path, c.change_class) for c in d.plan.corosync_changes] == [("totem.token", "reload")]
    assert d.plan.impact is None and "not with a cluster" in d.plan.notes[0]
    from controller.decision_render import decision_markdown

    assert "- **Note**: compared with the desired state at main, not with a cluster" in decision_markdown(d)
    assert [s.kind for s in d.plan.steps] == ["cib-patch", "corosync-write", "corosync-reload"]


def test_an_invalid_head_is_refused(tmp_path: Path) -> None:
    bad = Finding(severity="error", file="cib.xml", message="broken")
    d = decide(folder(tmp_path / "a"), folder(tmp_path / "b", resources=3), [bad])
    assert (d.verdict, d.exit_code, d.codes) == ("refuse", 3, ["invalid"])
    assert d.reasons[0].findings == [bad]
    unloaded = decide_against_base(revision=None, base="main", state=None, findings=[bad], cib=None,
                                   base_corosync=None, now=NOW)
    assert (unloaded.verdict, unloaded.codes) == ("refuse", ["invalid"])


def test_the_policy_rules_that_need_no_cluster_apply(tmp_path: Path) -> None:
    d = decide(folder(tmp_path / "a"), folder(tmp_path / "b", name="other"))
    assert (d.verdict, d.exit_code) == ("refuse", 3)
    assert [v.rule for v in d.reasons[0].violations] == ["allow_cluster_restart"]
    few = "[disruption]\nmax_deletions = 0\n"
    d = decide(folder(tmp_path / "c", policy=few), folder(tmp_path / "d", resources=1, policy=few))
    assert (d.verdict, [v.rule for v in d.reasons[0].violations]) == ("refuse", ["max_deletions"])
    # protect needs the predicted impact: not judged here (the note says where it is)
    protect = '[disruption]\nprotect = ["d0"]\n'
    d = decide(folder(tmp_path / "e", policy=protect), folder(tmp_path / "f", resources=3, policy=protect))
    assert d.verdict == "apply"
