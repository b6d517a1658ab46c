"""The sandbox's forge without running it: its address, URLs, the agents' settings for each transport,
the deploy keys' restrictions, and the push webhook the hook sends (delivered for real over loopback)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from pathlib import Path
from typing import Any

from controller.sandbox.forge import (
    ForgeLayout,
    agent_transport_toml,
    authorized_key,
    forge_group,
    forge_passwd,
    free_id,
    hook_targets,
    known_hosts,
    render_httpd_conf,
    render_sshd_config,
)
from controller.sandbox.forge_hook import FULL_NAME, headers, payload, push_events, send_all, signature
from controller.sandbox.layout import Layout
from controller.sandbox.supervisor import agent_toml
from controller.sandbox.topology import ForgeSpec, SandboxAgents, build_spec, free_addresses
from controller.settings import load_settings
from tests.conftest import REFERENCE

OLD, NEW = "a" * 40, "b" * 40


def _forge_spec(root: str = "/var/lib/sb") -> ForgeSpec:
    spec = build_spec(REFERENCE)
    return ForgeSpec(address=spec.forge_address, seed="/srv/seed", repo=f"{root}/forge/cluster.git")


def test_forge_takes_the_next_free_address_after_the_power_switch() -> None:
    spec = build_spec(REFERENCE)
    assert (spec.power_switch, spec.forge_address) == ("10.220.1.254", "10.220.1.253")
    taken = "ring0_addr: 10.220.1.254\nparams ip=10.220.1.252\n"
    assert free_addresses("10.220.1.21", 24, [taken], 2) == ["10.220.1.253", "10.220.1.251"]


def test_forge_urls() -> None:
    f = _forge_spec()
    assert f.ssh_url == "ssh://git@10.220.1.253/var/lib/sb/forge/cluster.git"
    assert f.https_url == "https://10.220.1.253/cluster.git"
    assert f.url("https") == f.https_url and f.url("ssh") == f.ssh_url


def _toml(tmp_path: Path, agents: SandboxAgents) -> tuple[str, Any]:
    spec = build_spec(REFERENCE)
    forge = _forge_spec(str(tmp_path))
    spec = spec.model_copy(update={"forge": forge, "agents": agents.model_copy(
        update={"repo_url": forge.url(agents.remote)})})
    text = agent_toml(spec, spec.nodes[0], Layout(tmp_path))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return text, load_settings(path)


def test_agents_follow_the_forge_over_ssh_with_a_pinned_host_key(tmp_path: Path) -> None:
    text, s = _toml(tmp_path, SandboxAgents(repo_url="/srv/seed", forge=True, retry_max=10))
    assert s.repo_url == f"ssh://git@10.220.1.253{tmp_path}/forge/cluster.git"
    assert s.git_ssh_command is not None
    for part in ("-i /etc/ha-gitops/deploy_key", "IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
                 "UserKnownHostsFile=/etc/ha-gitops/forge_known_hosts"):
        assert part in s.git_ssh_command
    assert s.git_token_file is None and s.retry_max == 10
    assert "webhook" not in text and "http_listen" not in text  # the agent of this branch has no such keys


def test_agents_follow_the_forge_over_https_with_the_sandbox_ca_and_a_token(tmp_path: Path) -> None:
    _, s = _toml(tmp_path, SandboxAgents(repo_url="/srv/seed", forge=True, remote="https"))
    assert s.repo_url == "https://10.220.1.253/cluster.git"
    assert str(s.git_ca_file) == "/etc/ha-gitops/forge-ca.crt"
    assert str(s.git_token_file) == "/etc/ha-gitops/git-token"


def test_webhook_settings_only_behind_the_flag() -> None:
    lines = agent_transport_toml(_forge_spec(), "ssh", webhooks=True)
    assert 'webhook_secret_file = "/etc/ha-gitops/webhook.secret"' in lines
    assert 'http_listen = "0.0.0.0:9811"' in lines


def test_deploy_keys_are_restricted_and_the_host_key_pinned() -> None:
    line = authorized_key("ssh-ed25519 AAAAC3Nza key-comment\n", "kamailio01")
    assert line == "restrict ssh-ed25519 AAAAC3Nza sandbox-deploy-key-kamailio01"
    pinned = known_hosts("10.0.0.9", "ssh-ed25519 AAAAhost sandbox-forge\n")
    assert pinned == "10.0.0.9 ssh-ed25519 AAAAhost\n"


def test_the_git_user_exists_only_in_the_forge_with_git_shell(tmp_path: Path) -> None:
    host = "root:x:0:0:root:/root:/bin/bash\ngit:x:5:5::/home/git:/bin/sh\nsshd:x:104:65534::/run/sshd:/x\n"
    passwd = forge_passwd(host, 64990, 64991, tmp_path)
    assert passwd.splitlines() == ["root:x:0:0:root:/root:/bin/bash", "sshd:x:104:65534::/run/sshd:/x",
                                   f"git:x:64990:64991:sandbox forge:{tmp_path}:/usr/bin/git-shell"]
    assert forge_group("root:x:0:\n", 64991).splitlines() == ["root:x:0:", "git:x:64991:"]
    assert free_id({64990, 64989}) == 64988


def test_daemon_configs_allow_keys_and_tokens_only(tmp_path: Path) -> None:
    lay = ForgeLayout(tmp_path)
    sshd = render_sshd_config(lay, "10.0.0.9")
    for line in ("ListenAddress 10.0.0.9:22", "PasswordAuthentication no", "AllowUsers git", "UsePAM no",
                 f"AuthorizedKeysFile {lay.authorized_keys}", "PermitRootLogin no"):
        assert line in sshd.splitlines()
    httpd = render_httpd_conf(lay, "10.0.0.9").splitlines()
    for line in ("Listen 10.0.0.9:443", "SSLEngine on", "ScriptAlias / /usr/lib/git-core/git-http-backend/",
                 "  Require valid-user", f"  AuthUserFile {lay.htpasswd}"):
        assert line in httpd


def test_push_events_and_payload() -> None:
    stdin = f"{OLD} {NEW} refs/heads/main\n{OLD} {NEW} refs/tags/v1\n"
    assert push_events(stdin) == [(OLD, NEW, "refs/heads/main")]
    body = json.loads(payload(OLD, NEW, "refs/heads/main"))
    assert body == {"ref": "refs/heads/main", "before": OLD, "after": NEW,
                    "repository": {"full_name": FULL_NAME}}
    # GitHub's own example (docs: "Validating webhook deliveries").
    assert signature(b"It's a Secret to Everybody", b"Hello, World!") == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    h = headers(b"s", b"{}")
    assert h["X-GitHub-Event"] == "push" and h["Content-Type"] == "application/json"


def test_hook_delivers_signed_pushes_and_logs_an_agent_that_is_down(tmp_path: Path) -> None:
    got: list[tuple[dict[str, str], bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    secret = tmp_path / "webhook.secret"
    secret.write_text("0123abcd")
    log = tmp_path / "hooks.log"
    up = f"http://127.0.0.1:{srv.server_address[1]}/hooks/github"
    down = "http://127.0.0.1:9/hooks/github"  # nothing listens on port 9
    try:
        send_all({"targets": [up, down], "secret_file": str(secret), "log": str(log), "timeout": 2},
                 [(OLD, NEW, "refs/heads/main")])
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(got) == 1
    hdrs, body = got[0]
    assert hdrs["X-Hub-Signature-256"] == "sha256=" + hmac.new(b"0123abcd", body, hashlib.sha256).hexdigest()
    assert json.loads(body)["after"] == NEW
    lines = log.read_text().splitlines()
    assert any(up in ln and "HTTP 202" in ln for ln in lines)
    assert any(down in ln and "not delivered" in ln and "refused" in ln.lower() for ln in lines)


def test_hook_targets_every_node() -> None:
    assert hook_targets(build_spec(REFERENCE)) == [f"http://10.220.1.{i}:9811/hooks/github"
                                                   for i in (21, 22, 23)]
