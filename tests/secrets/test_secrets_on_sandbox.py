"""Secrets on a real cluster: a Dummy resource with `passwd="@secret:..."` gets the value at run time
(read from the resource agent's own environment: Dummy's `envfile` dumps it at every call), the CIB holds
`lrm://`, and the value is in no audit row, agent log or plan; a rotation reaches every node and the
resource; a node's store edited by hand is corrected; a secrets.age a node cannot decrypt is refused."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from controller.cib.marker import read_marker
from controller.cib.xml import to_bytes
from controller.sandbox.manager import Sandbox
from controller.secrets import age
from controller.secrets.folder import write_secrets
from tests.agentslib import AGENT_TOML, SANDBOX_NODES, agents_sandbox, audit, cli, dc, recorded
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "clusters/kamailio"
RSC = "secret-dummy"
ENVFILE = "/var/lib/pacemaker/secret-dummy.env"  # per node: <node dir>/var-lib-pacemaker/secret-dummy.env
V1, V2, V3 = "first-Secret-9x7", "second-Secret-4q2", "third-Secret-1z8"
PRIMITIVE = (f'\nprimitive {RSC} ocf:pacemaker:Dummy params passwd="@secret:dummy_pw" envfile={ENVFILE} '
             'op monitor interval=3s timeout=20s\n')


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, GitRepo, Path]]:
    operator = tmp_path_factory.mktemp("operator") / "age.key"
    age.keygen(operator)
    with agents_sandbox("secrets", FOLDER, poll_interval=3.0) as (sb, repo):
        yield sb, repo, operator


def recipients(sb: Sandbox, operator: Path, *, leave_out: str | None = None) -> list[str]:
    nodes = {n.name: n.age_recipient for n in sb.status().nodes}
    assert all(nodes.values()), f"every node has an age recipient: {nodes}"
    return [r for n, r in nodes.items() if n != leave_out and r] + [age.recipient_of(operator)]


def commit_secrets(sb: Sandbox, repo: GitRepo, operator: Path, value: str, message: str, *,
                   leave_out: str | None = None, cib: str | None = None) -> str:
    folder = repo.path / FOLDER
    rs = recipients(sb, operator, leave_out=leave_out)
    quoted = ", ".join(f'"{r}"' for r in rs)
    files = {f"{FOLDER}/cluster.toml": f"[secrets]\nrecipients = [{quoted}]\n"}
    if cib is not None:
        files[f"{FOLDER}/cib.crm"] = cib
    (folder / "cluster.toml").write_text(files[f"{FOLDER}/cluster.toml"])
    write_secrets(folder, {"dummy_pw": value}, rs)
    return repo.commit(files, message)


def resource_node(sb: Sandbox) -> str:
    def where() -> str | None:
        r = sb.cluster(SANDBOX_NODES[0]).status().resource(RSC)
        return r.nodes[0] if r and r.nodes and r.role == "Started" else None
    return wait_for(where, 60, f"{RSC} started")


def agent_env_value(sb: Sandbox, node: str) -> str | None:
    """OCF_RESKEY_passwd in the newest environment dump of the resource agent on `node`."""
    path = sb.layout.node_dir(node) / "var-lib-pacemaker" / Path(ENVFILE).name
    try:
        found = re.findall(r"^OCF_RESKEY_passwd=(.*)$", path.read_text(), re.M)
    except OSError:
        return None
    return str(found[-1]) if found else None


def store_file(sb: Sandbox, node: str) -> Path:
    return sb.layout.node_dir(node) / "var-lib-pacemaker" / "lrm" / "secrets" / RSC / "passwd"


def store_holds(sb: Sandbox, value: str) -> bool:
    md5 = hashlib.md5(value.encode()).hexdigest()
    for node in SANDBOX_NODES:
        f = store_file(sb, node)
        try:
            if f.read_text() != value + "\n" or f.with_name("passwd.sign").read_text().strip() != md5:
                return False
        except OSError:
            return False
    return True


def nowhere_but_the_store(sb: Sandbox, value: str) -> None:
    """The value is in no audit database, agent log, CIB or plan output of any node."""
    needle = value.encode()
    for node in SANDBOX_NODES:
        d = sb.layout.node_dir(node)
        for f in [*(d / "var-lib-ha-gitops").glob("audit.db*"), *(d / "logs").glob("*")]:
            if f.is_file():
                assert needle not in f.read_bytes(), f"the secret value is in {f}"
        _, out, err = cli(sb, node, "plan", "--config", AGENT_TOML)
        assert value not in out and value not in err, f"the secret value is in {node}'s plan output"
    assert needle not in to_bytes(sb.cluster(SANDBOX_NODES[0]).read_cib())


def test_a_secret_parameter_reaches_the_resource_and_nothing_else(env: tuple[Sandbox, GitRepo, Path]) -> None:
    sb, repo, operator = env
    cib = repo.read(f"{FOLDER}/cib.crm") + PRIMITIVE
    sha = commit_secrets(sb, repo, operator, V1, "secret-dummy with a secret passwd", cib=cib)
    wait_for(lambda: read_marker(sb.cluster(SANDBOX_NODES[0]).read_cib()).revision == sha, 90,
             "the revision with a secret applied")
    live = sb.cluster(SANDBOX_NODES[0]).read_cib()
    nv = live.find(f".//primitive[@id='{RSC}']/instance_attributes/nvpair[@name='passwd']")
    assert nv is not None and nv.get("value") == "lrm://"
    assert store_holds(sb, V1)
    # the order within the pass: every node's store held the value before the CIB change was written
    writer = dc(sb)
    applied = recorded(sb, writer, lambda e: e["kind"] == "apply" and (e["commit"] or {}).get("sha") == sha,
                       "the writer's apply event")
    for n in SANDBOX_NODES:
        stored = [e for e in audit(sb, n) if e["kind"] == "secrets-stored"
                  and (e["commit"] or {}).get("sha") == sha]
        assert stored, f"{n} recorded storing its secrets"
        assert datetime.fromisoformat(stored[-1]["time"]) < datetime.fromisoformat(applied["time"]), \
            f"{n} stored its secrets before the write"
    node = resource_node(sb)
    wait_for(lambda: agent_env_value(sb, node) == V1, 30, "the resource agent's environment has the value")
    nowhere_but_the_store(sb, V1)
    _, out, _ = cli(sb, node, "plan", "--config", AGENT_TOML)
    assert "passwd: unchanged" in out


def test_a_rotation_reaches_every_node_and_the_resource(env: tuple[Sandbox, GitRepo, Path]) -> None:
    sb, repo, operator = env
    sha = commit_secrets(sb, repo, operator, V2, "rotate dummy_pw")
    wait_for(lambda: store_holds(sb, V2), 90, "every node's store holds the rotated value")
    node = resource_node(sb)
    # the CIB does not change (lrm:// both times): the next operation (a 3 s monitor) reads the new value
    wait_for(lambda: agent_env_value(sb, node) == V2, 30, "the resource agent's environment has the rotation")
    wait_for(lambda: read_marker(sb.cluster(SANDBOX_NODES[0]).read_cib()).revision == sha, 60,
             "the rotation recorded")
    stored = [e for e in audit(sb, node) if e["kind"] == "secrets-stored"]
    assert stored, "the node recorded writing its store"
    nowhere_but_the_store(sb, V2)


def test_a_store_edited_by_hand_is_corrected(env: tuple[Sandbox, GitRepo, Path]) -> None:
    sb, _, _ = env
    node = SANDBOX_NODES[1]
    store_file(sb, node).write_text("edited-by-hand\n")
    wait_for(lambda: store_file(sb, node).read_text() == V2 + "\n", 60, "the hand edit corrected")
    # the correction is recorded a moment after the store is written: wait for the event
    recorded(sb, node, lambda e: e["kind"] == "drift-corrected"
             and "secrets store differed" in (e.get("summary") or ""),
             "the correction recorded as drift on that node")


def test_a_secrets_file_a_node_cannot_decrypt_is_refused_whole(env: tuple[Sandbox, GitRepo, Path]) -> None:
    sb, repo, operator = env
    writer = dc(sb)
    left_out = next(n for n in SANDBOX_NODES if n != writer)
    before = read_marker(sb.cluster(writer).read_cib()).revision
    cib = repo.read(f"{FOLDER}/cib.crm") + "\nprimitive never-written ocf:pacemaker:Dummy\n"
    sha = commit_secrets(sb, repo, operator, V3, f"secrets.age without {left_out}", leave_out=left_out,
                         cib=cib)

    def refusal() -> dict[str, object] | None:
        for e in audit(sb, writer):
            if e["kind"] == "refused" and (e.get("commit") or {}).get("sha") == sha:
                return e
        return None

    event = wait_for(refusal, 90, "the writer's refusal")
    text = str(event)
    assert f"node {left_out} cannot decrypt secrets.age" in text
    live = sb.cluster(writer).read_cib()
    assert read_marker(live).revision == before
    assert live.find(".//primitive[@id='never-written']") is None
    code, out, err = cli(sb, left_out, "plan", "--config", AGENT_TOML)
    assert code == 3 and "cannot decrypt" in out + err and V3 not in out + err
