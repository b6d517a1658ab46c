"""The agents follow a real forge on the sandbox network: sshd with deploy keys and a pinned host key, and
Apache serving the same repository over https with the sandbox's CA and a token. Pushes are made inside
the forge (its hooks run there); the forge's daemons are stopped and started under the agents, and their
credentials made wrong, and the agents must say so clearly and leave the cluster alone."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.forge import ForgeLayout
from controller.sandbox.manager import Sandbox
from controller.sandbox.topology import FORGE
from tests.agentslib import SANDBOX_NODES, agent_status, agents_sandbox
from tests.helpers import HA_GITOPS, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "clusters/kamailio"
ETC = "etc-ha-gitops"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    # No webhooks in this branch's agent: a short poll finds the pushes; a short backoff recovers fast.
    with agents_sandbox("forge", FOLDER, forge=True, poll_interval=3.0, retry_initial=1.0,
                        retry_max=4.0) as (sandbox, _seed):
        yield sandbox


def forge_push(sb: Sandbox, stickiness: int, message: str, *, amend: bool = False) -> str:
    """Commit in the forge's work clone and push from inside the forge; the new tip."""
    work = ForgeLayout(sb.layout.root).work
    path = work / FOLDER / "cib.crm"
    path.write_text(re.sub(r"resource-stickiness=\d+", f"resource-stickiness={stickiness}", path.read_text()))
    git = ["git", "-C", str(work)]
    sb.exec(FORGE, [*git, "commit", "-q", "-a", "-m", message, *(["--amend"] if amend else [])], check=True)
    sb.exec(FORGE, [*git, "push", "-q", *(["--force"] if amend else []), "origin", "HEAD:main"], check=True)
    return sb.exec(FORGE, [*git, "rev-parse", "HEAD"], check=True).stdout.strip()


def live_stickiness(sb: Sandbox) -> str:
    r = sb.exec("kamailio01", ["crm_attribute", "-t", "rsc_defaults", "-s", "rsc-options", "-n",
                               "resource-stickiness", "-G", "-q"])
    return r.stdout.strip()


def revision(sb: Sandbox) -> str | None:
    return read_marker(sb.cluster("kamailio01").read_cib()).revision


def config_epoch(sb: Sandbox) -> tuple[str, str]:
    cib = sb.cluster("kamailio01").read_cib()
    return cib.get("admin_epoch", ""), cib.get("epoch", "")


def applied(sb: Sandbox, sha: str, stickiness: int, what: str, timeout: float = 45) -> None:
    wait_for(lambda: live_stickiness(sb) == str(stickiness) and revision(sb) == sha, timeout, what)


def published_repo(sb: Sandbox, node: str) -> str | None:
    repo: str | None = agent_status(sb, node).get("repo")
    return repo


def source_errors(sb: Sandbox, needle: str, since: datetime | None = None) -> dict[str, str] | None:
    """Every node's source error, once each of them names `needle` (in a pass published after `since`)."""
    statuses = {n: agent_status(sb, n) for n in SANDBOX_NODES}
    errors = {n: st.get("source_error") or "" for n, st in statuses.items()}
    fresh = since is None or all(datetime.fromisoformat(st["time"]) > since for st in statuses.values())
    return errors if fresh and all(needle in e for e in errors.values()) else None


def push_refused(sb: Sandbox, stickiness: int, message: str, needle: str) -> tuple[str, dict[str, str]]:
    """With every agent already refused (`needle`), push; once each has tried again since (a fetch that began
    before the credentials broke cannot count), the errors. The retry backoff is at most 4 s here."""
    wait_for(lambda: source_errors(sb, needle), 45, f"every agent refused ({needle})")
    since = datetime.now(UTC) + timedelta(seconds=5)
    sha = forge_push(sb, stickiness, message)
    errors = wait_for(lambda: source_errors(sb, needle, since), 45,
                      f"still refused after the push ({needle})")
    return sha, errors


def test_status_shows_the_forge_and_agents_follow_it_over_ssh(sb: Sandbox) -> None:
    r = subprocess.run([*HA_GITOPS, "sandbox", "status", "--format", "json", "--state-dir",
                        str(sb.layout.root)], capture_output=True, text=True, timeout=120, check=True)
    forge = json.loads(r.stdout)["forge"]
    assert forge["ssh"] is True and forge["https"] is True and forge["address"] == "10.220.1.253"
    assert forge["ssh_url"] == f"ssh://git@10.220.1.253{sb.layout.root}/forge/cluster.git"
    assert forge["https_url"] == "https://10.220.1.253/cluster.git"
    assert Path(forge["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for node in SANDBOX_NODES:
        repo = wait_for(functools.partial(published_repo, sb, node), 30, f"{node}'s first pass published")
        assert repo == forge["ssh_url"]
        etc = sb.layout.node_dir(node) / ETC
        for name in ("deploy_key", "forge_known_hosts", "git-token", "forge-ca.crt", "webhook.secret"):
            assert (etc / name).stat().st_mode & 0o777 == 0o600, name

    sha = forge_push(sb, 150, "stickiness 150, pushed in the forge")
    applied(sb, sha, 150, "the push over ssh applied")
    # The forge's post-receive hook tried every agent (none listens for webhooks in this branch), in the
    # background: the push above returned without waiting for them.
    log = ForgeLayout(sb.layout.root).hooks_log
    wait_for(lambda: log.exists() and log.read_text().count(sha[:12]) == 3, 15, "the hook's three deliveries")


def test_a_force_push_is_followed(sb: Sandbox) -> None:
    forge_push(sb, 160, "stickiness 160")
    rewritten = forge_push(sb, 165, "stickiness 165 (history rewritten)", amend=True)
    applied(sb, rewritten, 165, "the force-pushed tip applied")


def test_forge_sshd_down_is_reported_then_recovered(sb: Sandbox) -> None:
    before = revision(sb)
    sb.forge_stop("ssh")
    try:
        sha = forge_push(sb, 170, "pushed while the forge's sshd is down")
        errors = wait_for(lambda: source_errors(sb, "connection refused"), 45, "the outage reported")
        for err in errors.values():
            assert err.startswith(f"cannot fetch ssh://git@10.220.1.253{sb.layout.root}/forge/cluster.git: "
                                  "connection refused: the server is down"), err
        assert live_stickiness(sb) == "165" and revision(sb) == before
    finally:
        sb.forge_start("ssh")
    applied(sb, sha, 170, "the push made during the outage applied after it")
    wait_for(lambda: not any(agent_status(sb, n).get("source_error") for n in SANDBOX_NODES) or None, 30,
             "the errors cleared")


def test_a_wrong_deploy_key_is_refused_and_nothing_applied(sb: Sandbox) -> None:
    keys = {n: sb.layout.node_dir(n) / ETC / "deploy_key" for n in SANDBOX_NODES}
    saved = {n: k.read_bytes() for n, k in keys.items()}
    before, epoch = revision(sb), config_epoch(sb)
    try:
        for key in keys.values():  # a key the forge never saw
            key.unlink()
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                           timeout=30)
        sha, errors = push_refused(sb, 180, "pushed while the agents hold the wrong key",
                                   "permission denied (publickey)")
        assert all("the server refused the deploy key" in e for e in errors.values()), errors
        assert live_stickiness(sb) == "170" and revision(sb) == before and config_epoch(sb) == epoch
    finally:
        for node, key in keys.items():
            key.write_bytes(saved[node])
            key.chmod(0o600)
            Path(f"{key}.pub").unlink(missing_ok=True)
    applied(sb, sha, 180, "applied once the right key is back")


def test_a_host_key_that_is_not_the_pinned_one_is_refused(sb: Sandbox, tmp_path: Path) -> None:
    """A forge answering with another host key (a man in the middle, or a reinstalled server)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True,
                   timeout=30)
    other = (tmp_path / "other.pub").read_text().split()
    pins = {n: sb.layout.node_dir(n) / ETC / "forge_known_hosts" for n in SANDBOX_NODES}
    saved = {n: p.read_text() for n, p in pins.items()}
    before = revision(sb)
    try:
        for p in pins.values():
            p.write_text(f"10.220.1.253 {other[0]} {other[1]}\n")
        push_refused(sb, 185, "pushed while the pinned host key is another", "host key verification failed")
        assert revision(sb) == before
    finally:
        for n, p in pins.items():
            p.write_text(saved[n])
    wait_for(lambda: live_stickiness(sb) == "185" or None, 45, "applied once the pin matches again")


def test_agents_follow_the_forge_over_https(sb: Sandbox) -> None:
    agents = sb.spec().agents
    assert agents is not None
    sb.agents_stop()
    sb.agents_start(agents.model_copy(update={"remote": "https"}))
    https_url = "https://10.220.1.253/cluster.git"
    sha = forge_push(sb, 190, "stickiness 190, followed over https")
    applied(sb, sha, 190, "the push over https applied", timeout=60)
    wait_for(lambda: all(agent_status(sb, n).get("repo") == https_url for n in SANDBOX_NODES) or None, 30,
             "every agent following the https URL")

    # A token the forge does not know: HTTP 401, named, and nothing applied.
    tokens = {n: sb.layout.node_dir(n) / ETC / "git-token" for n in SANDBOX_NODES}
    good = {n: t.read_text() for n, t in tokens.items()}
    try:
        for t in tokens.values():
            t.write_text("not-the-token\n")
        sha, errors = push_refused(sb, 200, "pushed while the agents hold a wrong token",
                                   "HTTP 401: authentication refused")
        assert all(e.startswith(f"cannot fetch {https_url}: ") and "not-the-token" not in e
                   for e in errors.values()), errors
        assert live_stickiness(sb) == "190"
    finally:
        for n, t in tokens.items():
            t.write_text(good[n])
    applied(sb, sha, 200, "applied once the token is right")

    # The https server down, then back.
    sb.forge_stop("https")
    try:
        wait_for(lambda: source_errors(sb, "connection refused"), 45, "the https outage reported")
    finally:
        sb.forge_start("https")
    sha = forge_push(sb, 210, "after the https outage")
    applied(sb, sha, 210, "recovered after the https server came back")


def test_down_leaves_no_forge_behind(sb: Sandbox) -> None:
    sb.down()
    assert sb.leftovers() == {"processes": [], "netns": [], "mounts": []}
