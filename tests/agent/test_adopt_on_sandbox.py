"""Adopting a running cluster, on the real sandbox: `export` then `plan` is a no-op, and first contact.

One sandbox, started without agents, plays a cluster that ran for years before ha-gitops: the reference
configuration loaded by hand (its systemd unit as the Dummy it is in every sandbox), then edited by hand
with crm, crm_resource, crm_attribute and cibadmin. On it, in order:
- `export` (crm and xml) and `plan --dir` on what it wrote: exit 0, no change;
- real configurations from ../shared/corpus merged into it (maintenance-mode on, so nothing of them
  starts): export, plan, exit 0 again;
- first contact: agents started with `sandbox agents start` on a repository that lacks the hand-made
  resource wait (status says so, a `first-contact` event holds the plan), `adopt` without a terminal
  refuses, `adopt --yes` on another node applies and records who;
- a cluster without a marker whose repository deletes nothing is applied by the agents on their own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from controller.cib.marker import MARKER_SET_ID, read_marker
from controller.cib.xml import parse_xml_bytes, to_bytes
from controller.command import run
from controller.sandbox.manager import Sandbox
from tests.agentslib import agent_status, audit, cli, dc, recorded, reference_files
from tests.conftest import CORPUS, REFERENCE, need_root, sandbox_repo_dir, sandbox_state
from tests.helpers import HA_GITOPS, GitRepo, wait_for

pytestmark = pytest.mark.sandbox

NAME = "adopt"
FOLDER = "kamailio"
NODES = ["kamailio01", "kamailio02", "kamailio03"]
SCHEDULER = CORPUS / "cib" / "pacemaker-scheduler"
# Resource sets, a template, a ticket (one at a time: their ids overlap): agents every Debian node has
# (Dummy), their fencing devices left out.
CORPUS_CIBS = ["coloc-intra-set.xml", "template-order-2.xml", "ticket-group-18.xml"]
AGENT_TOML = "/etc/ha-gitops/agent.toml"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    need_root()
    box = Sandbox(sandbox_state(NAME))
    box.down()
    box.up(REFERENCE, timeout=90)
    try:
        # The cluster as its operators built it by hand, long before ha-gitops.
        crm = (REFERENCE / "cib.crm").read_text().replace("systemd:kamailio", "ocf:pacemaker:Dummy")
        shared(box, "by-hand.crm").write_text(crm)
        ok(box.exec("kamailio01", ["crm", "configure", "load", "update", str(shared(box, "by-hand.crm"))]))
        yield box
    finally:
        box.down(keep_logs=True)
        shutil.rmtree(sandbox_repo_dir(NAME), ignore_errors=True)


def shared(sb: Sandbox, name: str) -> Path:
    """A path every node sees (the sandbox state directory)."""
    return sb.layout.root / name


def ok(result: object) -> None:
    rc = getattr(result, "returncode", 0)
    assert rc == 0, f"{getattr(result, 'stdout', '')}\n{getattr(result, 'stderr', '')}"


def export_and_plan(sb: Sandbox, fmt: str, node: str = "kamailio02") -> tuple[int, str, str]:
    out = shared(sb, f"export-{fmt}")
    shutil.rmtree(out, ignore_errors=True)
    code, stdout, stderr = cli(sb, node, "export", "--out", str(out), "--format", fmt)
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(["corosync.conf", f"cib.{fmt}", "cluster.toml"])
    pcode, pout, perr = cli(sb, "kamailio03", "plan", "--dir", str(out))
    assert pcode == 0, f"plan after export ({fmt}) is not a no-op:\n{pout}{perr}"
    return code, stdout, stderr


def test_export_then_plan_is_a_no_op_after_hand_changes(sb: Sandbox) -> None:
    n = "kamailio01"
    ok(sb.exec(n, ["crm", "configure", "primitive", "HAND-01", "ocf:pacemaker:Dummy", "op", "monitor",
                   "interval=15s"]))
    ok(sb.exec(n, ["crm_resource", "--resource", "HAND-01", "--set-parameter", "passwd",
                   "--parameter-value", "s3cret"]))
    ok(sb.exec(n, ["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                   '<rsc_location id="loc-hand" rsc="HAND-01" node="kamailio02" score="50"/>']))
    ok(sb.exec(n, ["crm_attribute", "--type", "nodes", "--node", "kamailio01", "--name", "rack",
                   "--update", "r1"]))
    ok(sb.exec(n, ["crm_attribute", "--type", "crm_config", "--name", "stonith-timeout", "--update", "90s"]))
    # The cluster's own writes (dc-version, last-lrm-refresh after a cleanup) are no user configuration.
    ok(sb.exec(n, ["crm_resource", "--cleanup", "--resource", "HAND-01"]))
    for fmt in ("crm", "xml"):
        _, _, stderr = export_and_plan(sb, fmt)
        text = (shared(sb, f"export-{fmt}") / f"cib.{fmt}").read_text()
        assert "HAND-01" in text and "loc-hand" in text and "rack" in text and "s3cret" in text
        assert "dc-version" not in text and "last-lrm-refresh" not in text
        assert "HAND-01: parameter passwd looks like a secret kept in clear text" in stderr
    # The skeleton is a valid (empty) policy, naming the cluster's own resources.
    toml = (shared(sb, "export-crm") / "cluster.toml").read_text()
    assert '# protect = ["PROXY01", "fencing", "HAND-01"]' in toml
    # Exported again into a folder that has a policy of its own: the policy is kept, in force for plan.
    out = shared(sb, "export-crm")
    (out / "cluster.toml").write_text('[settle]\ntimeout = "60s"\n')
    code, stdout, stderr = cli(sb, "kamailio02", "export", "--out", str(out), "--output", "json")
    assert code == 0 and json.loads(stdout)["cluster_toml_kept"], stdout + stderr
    assert (out / "cluster.toml").read_text() == '[settle]\ntimeout = "60s"\n'


def _corpus_part(name: str) -> etree._Element:
    """A corpus configuration without its fencing devices (the sandbox fences with its own) and without
    what names them."""
    config = parse_xml_bytes((SCHEDULER / name).read_bytes()).find("configuration")
    assert config is not None
    resources = config.find("resources")
    assert resources is not None
    dropped: set[str | None] = set()
    for top in list(resources):
        if any(p.get("class") == "stonith" for p in top.iter("primitive")):
            dropped.update(e.get("id") for e in top.iter() if e.get("id"))
            resources.remove(top)
    constraints = config.find("constraints")
    for c in list(constraints if constraints is not None else []):
        if {c.get("rsc"), c.get("with-rsc"), c.get("first"), c.get("then")} & dropped:
            constraints.remove(c)
    return config


@pytest.mark.parametrize("name", CORPUS_CIBS)
def test_export_then_plan_is_a_no_op_on_corpus_configurations(sb: Sandbox, name: str) -> None:
    n = "kamailio01"
    before = sb.cluster(n).read_cib().find("configuration")
    assert before is not None
    merged = etree.fromstring(to_bytes(before))
    part = _corpus_part(name)
    ids = [e.get("id") for s in ("resources", "constraints") for e in part.iterfind(f"{s}//*[@id]")]
    for section in ("resources", "constraints"):
        found, into = part.find(section), merged.find(section)
        assert into is not None
        for child in list(found if found is not None else []):
            into.append(child)
    bootstrap = merged.find("crm_config/cluster_property_set[@id='cib-bootstrap-options']")
    assert bootstrap is not None
    etree.SubElement(bootstrap, "nvpair", id="cib-bootstrap-options-maintenance-mode",
                     name="maintenance-mode", value="true")  # nothing of them starts
    shared(sb, "merged.xml").write_bytes(to_bytes(merged))
    try:
        ok(sb.exec(n, ["cibadmin", "--replace", "--scope", "configuration", "--xml-file",
                       str(shared(sb, "merged.xml"))]))
        live = sb.cluster(n).read_cib()
        assert ids and all(live.find(f".//*[@id='{i}']") is not None for i in ids)
        for fmt in ("crm", "xml"):
            export_and_plan(sb, fmt)
    finally:
        shared(sb, "before.xml").write_bytes(to_bytes(before))
        ok(sb.exec(n, ["cibadmin", "--replace", "--scope", "configuration", "--xml-file",
                       str(shared(sb, "before.xml"))]))


def _agents(sb: Sandbox, *args: str, expect: int = 0) -> str:
    r = run([*HA_GITOPS, "sandbox", "agents", *args, "--state-dir", str(sb.layout.root)], timeout=120,
            check=False)
    assert r.returncode == expect, r.stdout + r.stderr
    return r.stdout + r.stderr


def _hand_resource(sb: Sandbox) -> None:
    """HAND-01, made by hand (the first test made it; made here when a test runs alone)."""
    if sb.cluster("kamailio01").read_cib().find(".//primitive[@id='HAND-01']") is None:
        ok(sb.exec("kamailio01", ["crm", "configure", "primitive", "HAND-01", "ocf:pacemaker:Dummy"]))


def _repo() -> GitRepo:
    """The reference files as someone wrote them down: without HAND-01."""
    repo_dir = sandbox_repo_dir(NAME)
    if (repo_dir / ".git").is_dir():
        return GitRepo(repo_dir)
    shutil.rmtree(repo_dir, ignore_errors=True)
    return GitRepo.create(repo_dir, reference_files(FOLDER), "kamailio, as someone wrote it down")


def test_first_contact_waits_for_adopt_when_git_would_delete(sb: Sandbox) -> None:
    _hand_resource(sb)
    assert read_marker(sb.cluster("kamailio01").read_cib()).revision is None
    repo = _repo()
    repo_dir = repo.path
    _agents(sb, "start", "--repo", str(repo_dir), "--path", FOLDER)
    try:
        assert all(n.agent for n in sb.status().nodes)  # one agent per node, supervised as with `up --agents`
        assert "already running" in _agents(sb, "start", "--repo", str(repo_dir), expect=2)
        writer = dc(sb)
        state = wait_for(lambda: (a := agent_status(sb, writer)).get("outcome") == "waiting-for-adopt" and a,
                         90, "the DC's agent waiting for adopt")
        assert "ha-gitops adopt" in state["message"] and "HAND-01" in state["message"]
        code, text, _ = cli(sb, writer, "status", "--config", AGENT_TOML)
        assert code == 0 and "waiting-for-adopt" in text
        first = recorded(sb, writer, lambda e: e["kind"] == "first-contact", "the first-contact event")
        assert first["outcome"] == "skipped" and "waiting for `ha-gitops adopt`" in first["summary"]
        assert read_marker(sb.cluster("kamailio01").read_cib()).revision is None  # nothing written
        assert sb.cluster("kamailio01").read_cib().find(".//primitive[@id='HAND-01']") is not None
        other = next(n for n in NODES if n != writer)
        assert wait_for(lambda: agent_status(sb, other).get("outcome") == "waiting-for-adopt", 60,
                        "an observer saying so too")

        # No terminal to ask on: refused, nothing written.
        code, out, err = cli(sb, other, "adopt", "--config", AGENT_TOML)
        assert code == 2 and "--yes" in err and "HAND-01" in out, out + err
        assert read_marker(sb.cluster("kamailio01").read_cib()).revision is None

        code, out, err = cli(sb, other, "adopt", "--yes", "--config", AGENT_TOML)
        assert code == 0, out + err
        assert "resource HAND-01 (removed)" in out or "HAND-01" in out  # the plan was shown
        live = sb.cluster("kamailio01").read_cib()
        marker = read_marker(live)
        assert (marker.revision, marker.applied_by) == (repo.head(), other)
        assert live.find(".//primitive[@id='HAND-01']") is None and live.find(".//*[@id='loc-hand']") is None
        adopted = next(e for e in audit(sb, other) if e["kind"] == "adopt")
        assert adopted["details"]["user"] == "root" and adopted["commit"]["sha"] == repo.head()
        # The agents follow git from here on: nothing left to do, and nothing left to adopt.
        wait_for(lambda: agent_status(sb, writer).get("outcome") == "no-change", 60, "the writer at rest")
        code, out, err = cli(sb, other, "adopt", "--yes", "--config", AGENT_TOML)
        assert code == 2 and "already managed" in err, out + err
    finally:
        _agents(sb, "stop")
    assert not any(n.agent for n in sb.status().nodes)


def test_first_contact_that_deletes_nothing_is_applied_by_the_agents(sb: Sandbox) -> None:
    n = "kamailio01"
    # A cluster never managed again: no marker; its stickiness edited by hand; git deletes nothing.
    ok(sb.exec(n, ["cibadmin", "--delete", "--xml-text", f'<cluster_property_set id="{MARKER_SET_ID}"/>']))
    ok(sb.exec(n, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n", "resource-stickiness",
                   "-v", "50"]))
    assert read_marker(sb.cluster(n).read_cib()).revision is None
    repo = _repo()
    _agents(sb, "start", "--repo", str(repo.path), "--path", FOLDER)
    try:
        wait_for(lambda: read_marker(sb.cluster(n).read_cib()).revision == repo.head(), 90,
                 "the agents applying on their own")
        r = sb.exec(n, ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                        "resource-stickiness", "-G", "-q"])
        assert r.stdout.strip() == "100"
        writer = dc(sb)
        first = recorded(sb, writer, lambda e: e["kind"] == "first-contact", "the first-contact event")
        assert first["outcome"] == "success" and "deletes nothing" in first["summary"]
        recorded(sb, writer, lambda e: e["kind"] == "apply", "the writer's apply event")
    finally:
        _agents(sb, "stop")
