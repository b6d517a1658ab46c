"""The agent's HTTP listener on loopback: what a forge, Prometheus and a liveness probe get back."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InputError
from controller.service.http import AgentHTTP, liveness, load_webhook_secret
from controller.service.metrics import AgentMetrics
from controller.settings import AgentSettings
from controller.source.webhooks import github_signature

SECRET = b"hook-secret"


class App:
    def __init__(self) -> None:
        self.triggers: list[str] = []
        self.ok = True
        self.metrics = AgentMetrics(node="n1", branch="main", repo="file:///r")
        self.http = AgentHTTP(("127.0.0.1", 0), metrics=self.metrics, trigger=self.triggers.append,
                              alive=lambda: (self.ok, {"heartbeat_age": 1.0}), branch="main", secret=SECRET,
                              max_body=4096)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection(*self.http.address, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read(), r.getheader("Content-Type") or ""
        finally:
            conn.close()


@pytest.fixture
def app() -> Iterator[App]:
    a = App()
    a.http.start()
    yield a
    a.http.stop()


def push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": "c" * 40}).encode()


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(secret, body),
            "Content-Type": "application/json"}


def test_a_signed_push_triggers_a_fetch(app: App) -> None:
    status, body, _ = app.request("POST", "/hooks/github", push(), signed(push()))
    assert status == 200 and json.loads(body)["action"] == "trigger"
    assert app.triggers == ["webhook"]


def test_a_bad_signature_gets_401_and_triggers_nothing(app: App) -> None:
    status, body, _ = app.request("POST", "/hooks/github", push(), signed(push(), b"wrong"))
    assert status == 401 and "signature" in json.loads(body)["message"]
    status, _, _ = app.request("POST", "/hooks/gitlab", push(), {"X-Gitlab-Event": "Push Hook"})
    assert status == 401
    assert app.triggers == []


def test_another_branch_is_ignored(app: App) -> None:
    body = push("refs/heads/feature")
    assert app.request("POST", "/hooks/github", body, signed(body))[0] == 200
    assert app.triggers == []


def test_a_body_over_the_limit_is_413_unread(app: App) -> None:
    body = b"{" + b" " * 8192 + b"}"
    assert app.request("POST", "/hooks/github", body, signed(body))[0] == 413
    assert app.triggers == []


def test_an_announced_length_over_the_limit_is_refused_before_the_body_is_sent(app: App) -> None:
    with socket.create_connection(app.http.address, timeout=10) as s:
        s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413")


def test_metrics_healthz_and_unknown_paths(app: App) -> None:
    app.request("POST", "/hooks/github", push(), signed(push(), b"wrong"))
    status, body, ctype = app.request("GET", "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert b'ha_gitops_webhooks_total{action="reject",provider="github"} 1.0' in body
    assert app.request("GET", "/healthz")[0] == 200
    app.ok = False
    status, body, _ = app.request("GET", "/healthz")
    assert status == 503 and json.loads(body)["ok"] is False
    assert app.request("GET", "/nope")[0] == 404
    assert app.request("GET", "/hooks/github")[0] == 405


def test_liveness_bound() -> None:
    assert liveness(10.0, stopping=False, bound=960.0, last_outcome="no-change")[0]
    assert not liveness(961.0, stopping=False, bound=960.0, last_outcome=None)[0]
    assert not liveness(1.0, stopping=True, bound=960.0, last_outcome=None)[0]


def settings(**kw: Any) -> AgentSettings:
    return AgentSettings(repo_url="file:///r", **kw)


def test_secret_from_the_settings_or_a_file(tmp_path: Path) -> None:
    assert load_webhook_secret(settings()) is None
    assert load_webhook_secret(settings(webhook_secret="abc")) == b"abc"
    f = tmp_path / "webhook.secret"
    f.write_text("from-file\n")
    f.chmod(0o600)
    assert load_webhook_secret(settings(webhook_secret_file=f)) == b"from-file"
    assert load_webhook_secret(settings(webhook_secret="abc", webhook_secret_file=f)) == b"from-file"
    f.write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        load_webhook_secret(settings(webhook_secret_file=f))
    with pytest.raises(InputError, match="cannot read") as exc:
        load_webhook_secret(settings(webhook_secret_file=tmp_path / "missing"))
    assert exc.value.file == str(tmp_path / "missing")


def test_http_listen_values() -> None:
    assert settings().http_address == ("127.0.0.1", 9811)
    assert settings(http_listen=":9811").http_address == ("0.0.0.0", 9811)
    assert settings(http_listen="[::1]:9000").http_address == ("::1", 9000)
    assert settings(http_listen="off").http_address is None
    assert settings(http_listen="").http_address is None
    for bad in ("9811", "host:99999", "::1:9000"):
        with pytest.raises(ValueError, match="http_listen"):
            settings(http_listen=bad)
