"""The agents' HTTP listener on a real cluster: a forge's signed push is live in seconds (the poll is 15
minutes away and the push watcher is off, so only the webhook can explain it), a badly signed one gets 401
and changes nothing, /metrics passes promtool and moves with an apply, /healthz answers.

Requests are sent from inside a sandbox node to the agents' addresses on the sandbox network, as a forge
on that network would."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from controller.cib.marker import read_marker
from controller.sandbox.manager import Sandbox
from controller.source.webhooks import github_signature, hmac_hex
from tests.agentslib import SANDBOX_NODES, agents_sandbox, audit, dc
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "clusters/kamailio"
SECRET = "sandbox-webhook-secret"
POLL = 900.0  # far beyond this module's run: no poll ever fetches here
PORT = 9811
# Run inside a node: POST (or GET) argv[1] with headers argv[2] (JSON) and the body on stdin; prints
# "STATUS\nBODY".
CLIENT = r'''
import json, sys, urllib.error, urllib.request
url, method, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = sys.stdin.buffer.read() if method == "POST" else None
req = urllib.request.Request(url, data=data, headers=headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write(f"{status}\n{body.decode(errors='replace')}")
'''


def settled(sb: Sandbox, repo: GitRepo) -> None:
    """Every agent's passes are done with the initial sync (the marker names it before its verify ends)."""
    for node in SANDBOX_NODES:
        wait_for(functools.partial(sees_applied, sb, node, repo.head()), 90, f"{node}'s initial pass")


def sees_applied(sb: Sandbox, node: str, sha: str) -> bool:
    """The node's agent reports `sha` as the applied revision."""
    return metric(request(sb, node, "/metrics")[1], "ha_gitops_applied_revision_info") \
        == {f'{{revision="{sha}"}}': 1.0}


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("http", FOLDER, poll_interval=POLL, watch_source=False, ready=settled,
                        http_listen=f"0.0.0.0:{PORT}", webhook_secret=SECRET) as e:
        yield e


def request(sb: Sandbox, target: str, path: str, *, method: str = "GET", body: bytes = b"",
            headers: dict[str, str] | None = None, via: str = "kamailio01") -> tuple[int, str]:
    url = f"http://{sb.spec().node(target).address}:{PORT}{path}"
    r = sb.exec(via, [sys.executable, "-c", CLIENT, url, method, json.dumps(headers or {})],
                input=body.decode(), timeout=60)
    assert r.returncode == 0, r.stderr
    status, _, text = r.stdout.partition("\n")
    return int(status), text


def push_event(ref: str = "refs/heads/main", after: str = "0" * 40, pad: int = 0) -> bytes:
    event = {"ref": ref, "before": "0" * 40, "after": after,
             "repository": {"full_name": "ops/cluster", "clone_url": "file:///srv/git/cluster.git"}}
    if pad:
        event["padding"] = "x" * pad
    return json.dumps(event).encode()


def github_push(sb: Sandbox, target: str, body: bytes, secret: str = SECRET) -> tuple[int, str]:
    return request(sb, target, "/hooks/github", method="POST", body=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-Hub-Signature-256": github_signature(secret.encode(), body)})


def applied(sb: Sandbox) -> str | None:
    return read_marker(sb.cluster("kamailio01").read_cib()).revision


def set_stickiness(repo: GitRepo, value: int) -> str:
    text = re.sub(r"resource-stickiness=\d+", f"resource-stickiness={value}", repo.read(f"{FOLDER}/cib.crm"))
    return repo.commit({f"{FOLDER}/cib.crm": text}, f"stickiness {value}")


def metric(text: str, name: str) -> dict[str, float]:
    """Labels (as written) -> value of every sample of `name`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


# ------------------------------------------------------------------------------------------------ tests
def test_healthz_and_metrics_on_every_node(env: tuple[Sandbox, GitRepo]) -> None:
    sb, _ = env
    for node in SANDBOX_NODES:
        status, body = request(sb, node, "/healthz")
        assert status == 200 and json.loads(body)["ok"] is True
        status, text = request(sb, node, "/metrics")
        assert status == 200
        assert metric(text, "ha_gitops_audit_chain_verified") == {"": 1.0}
    writers = {n: metric(request(sb, n, "/metrics")[1], "ha_gitops_writer")[""] for n in SANDBOX_NODES}
    assert writers == {n: (1.0 if n == dc(sb) else 0.0) for n in SANDBOX_NODES}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing")
def test_metrics_pass_promtool(env: tuple[Sandbox, GitRepo]) -> None:
    sb, _ = env
    _, text = request(sb, dc(sb), "/metrics")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_signed_push_is_applied_in_seconds_and_metrics_move(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    writer = dc(sb)
    before = request(sb, writer, "/metrics")[1]
    assert metric(before, "ha_gitops_applied_revision_info") == {f'{{revision="{repo.head()}"}}': 1.0}
    sha = set_stickiness(repo, 150)
    time.sleep(3)
    assert applied(sb) != sha  # no watcher, no poll: nothing has seen the commit
    start = time.monotonic()
    for node in SANDBOX_NODES:  # as the forge does: every agent is told
        status, body = github_push(sb, node, push_event(after=sha))
        assert status == 200 and json.loads(body)["action"] == "trigger"
    wait_for(lambda: applied(sb) == sha, 60, "the pushed commit live")
    took = time.monotonic() - start
    assert took < 30, f"a webhook push took {took:.1f}s (poll interval {POLL}s)"
    event = wait_for(lambda: next((e for e in audit(sb, writer) if e["kind"] == "apply"
                                   and (e["commit"] or {}).get("sha") == sha), None), 30, "the apply event")
    assert "webhook" in event["details"]["trigger"]
    after = request(sb, writer, "/metrics")[1]
    assert metric(after, "ha_gitops_applied_revision_info") == {f'{{revision="{sha}"}}': 1.0}
    assert metric(after, "ha_gitops_passes_total")['{outcome="applied"}'] \
        > metric(before, "ha_gitops_passes_total")['{outcome="applied"}']
    assert metric(after, 'ha_gitops_webhooks_total')['{action="trigger",provider="github"}'] >= 1
    # The observers fetched too (after the writer), and record the same revision.
    for node in SANDBOX_NODES:
        wait_for(functools.partial(sees_applied, sb, node, sha), 30, f"{node} seeing {sha[:12]} applied")


def test_bad_signature_other_branch_and_big_body_change_nothing(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    old = applied(sb)
    sha = set_stickiness(repo, 175)
    for node in SANDBOX_NODES:
        status, body = github_push(sb, node, push_event(after=sha), secret="not-the-secret")
        assert status == 401, body
        status, body = request(sb, node, "/hooks/gitlab", method="POST", body=push_event(),
                               headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"})
        assert status == 401, body
        status, body = github_push(sb, node, push_event("refs/heads/feature", after=sha))
        assert status == 200 and json.loads(body)["action"] == "ignore"
        status, body = github_push(sb, node, push_event(after=sha, pad=2 * 1024 * 1024))
        assert status == 413, body
    time.sleep(15)  # time enough for any pass those could have started
    assert applied(sb) == old
    _, text = request(sb, dc(sb), "/metrics")
    assert metric(text, "ha_gitops_webhooks_total")['{action="reject",provider="github"}'] >= 2
    # The listener still works: a good delivery (Gitea's, this time) brings the commit in.
    event = push_event(after=sha)
    status, body = request(sb, dc(sb), "/hooks/gitea", method="POST", body=event, headers={
        "Content-Type": "application/json", "X-Gitea-Event": "push",
        "X-Gitea-Signature": hmac_hex(SECRET.encode(), event)})
    assert status == 200 and json.loads(body)["action"] == "trigger"
    wait_for(lambda: applied(sb) == sha, 60, "the pushed commit live")
