"""The agent's git transports: the https token and CA settings, and the errors a user reads when the
remote refuses or is gone. Pure parts, then real fetches over loopback (an http server that checks the
token; a closed port), in milliseconds. The forge in the sandbox tests the same over ssh and https."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.source import decisions
from controller.source.git import GitSource
from tests.source.sourcetestlib import Upstream, git

MakeSource = Callable[..., GitSource]


# --- pure --------------------------------------------------------------------------------------------------

def test_https_user_comes_from_the_url_or_defaults_to_git() -> None:
    assert decisions.https_user("https://forge.example.org/c.git") == "git"
    assert decisions.https_user("https://deploy-bot@forge.example.org/c.git") == "deploy-bot"
    assert decisions.https_user("https://bot:old@forge.example.org/c.git") == "bot"


def test_basic_auth_header_and_config_env() -> None:
    header = decisions.basic_auth_header("git", "t0ken")
    assert header == "Authorization: Basic " + base64.b64encode(b"git:t0ken").decode()
    env = decisions.git_config_env([("http.sslCAInfo", "/ca.crt"), ("http.extraHeader", header)])
    assert env == {"GIT_CONFIG_COUNT": "2",
                   "GIT_CONFIG_KEY_0": "http.sslCAInfo", "GIT_CONFIG_VALUE_0": "/ca.crt",
                   "GIT_CONFIG_KEY_1": "http.extraHeader", "GIT_CONFIG_VALUE_1": header}


def test_redact_url_hides_https_credentials_but_keeps_the_ssh_login() -> None:
    assert decisions.redact_url("https://bot:s3cret@h/c.git") == "https://***@h/c.git"
    assert decisions.redact_url("https://t0ken@h/c.git") == "https://***@h/c.git"
    assert decisions.redact_url("ssh://git@10.0.0.9/srv/c.git") == "ssh://git@10.0.0.9/srv/c.git"
    assert decisions.redact_url("ssh://git:pw@h/c.git") == "ssh://***@h/c.git"


@pytest.mark.parametrize(("stderr", "reason"), [
    ("git@10.1.1.9: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n\n"
     "Please make sure you have the correct access rights\nand the repository exists.\n",
     "permission denied (publickey)"),
    ("Host key verification failed.\r\nfatal: Could not read from remote repository.\n",
     "host key verification failed"),
    ("ssh: connect to host 10.1.1.9 port 22: Connection refused\r\nfatal: Could not read from remote "
     "repository.\n", "connection refused"),
    ("error: unable to read askpass response from '/bin/false'\nfatal: could not read Username for "
     "'https://10.1.1.9': terminal prompts disabled\n", "HTTP 401"),
    ("fatal: Authentication failed for 'https://10.1.1.9/c.git/'\n", "HTTP 401"),
    ("fatal: unable to access 'https://10.1.1.9/c.git/': The requested URL returned error: 403\n",
     "HTTP 403"),
    ("fatal: unable to access 'https://10.1.1.9/c.git/': server certificate verification failed. CAfile: "
     "none CRLfile: none\n", "TLS certificate verification failed"),
    ("fatal: unable to access 'https://10.1.1.9/c.git/': Failed to connect to 10.1.1.9 port 443 after 0 ms: "
     "Couldn't connect to server\n", "connection refused"),
    ("Warning: Identity file /etc/ha-gitops/deploy_key not accessible: No such file or directory.\n"
     "git@h: Permission denied (publickey).\n", "the deploy key file cannot be read"),
    ("fatal: '/srv/c.git' does not appear to be a git repository\n", "no repository at this URL"),
])
def test_transport_errors_are_named(stderr: str, reason: str) -> None:
    found = decisions.transport_error(stderr)
    assert found is not None and found.startswith(reason), found
    assert "\n" not in found and "[" in found  # one line, quoting what git said


def test_cache_damage_is_not_a_transport_error() -> None:
    for stderr in ("error: object file .git/objects/ab/cd is empty\nfatal: loose object abcd is corrupt\n",
                   "fatal: bad object refs/remotes/origin/main\n"):
        assert decisions.transport_error(stderr) is None


# --- real fetches over loopback ----------------------------------------------------------------------------

class _TokenServer(http.server.ThreadingHTTPServer):
    """Serves a bare repository over git's dumb http protocol, only to a request with the right token."""

    def __init__(self, root: Path, token: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"git:{token}".encode()).decode()
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _TokenServer

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization") or ""
        self.server.seen.append(auth)
        if auth != self.server.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_server(upstream: Upstream) -> Iterator[_TokenServer]:
    git("--git-dir", str(upstream.bare), "update-server-info")  # what the dumb protocol reads
    srv = _TokenServer(upstream.bare.parent, "s3cret-token")
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_token_file_is_sent_as_basic_auth_and_never_stored(token_server: _TokenServer, upstream: Upstream,
                                                           make_source: MakeSource, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    url = f"http://127.0.0.1:{token_server.server_address[1]}/{upstream.bare.name}"
    src = make_source(url, git_token_file=token)
    res = src.sync()
    assert res.ok, res.error
    assert res.revision is not None and res.revision.sha == upstream.tip()
    assert token_server.seen and set(token_server.seen) == {token_server.expected}
    # Not in the clone's config, not in the remote URL it keeps.
    stored = "".join(p.read_text(errors="replace") for p in src.git_dir.rglob("config"))
    assert "s3cret" not in stored and base64.b64encode(b"git:s3cret-token").decode() not in stored

    token.write_text("revoked\n")
    upstream.commit({"cluster/cib.crm": "# a change\n"}, "change")
    refused = src.sync(force=True)
    assert not refused.ok and refused.error is not None
    assert refused.error.startswith(f"cannot fetch {url}: HTTP 401: authentication refused"), refused.error
    assert "revoked" not in refused.error and not refused.recloned
    assert refused.revision is not None and refused.revision.sha == res.revision.sha  # the last good stays


def test_unreadable_token_file_is_named(make_source: MakeSource, tmp_path: Path) -> None:
    src = make_source("https://127.0.0.1:9/c.git", git_token_file=tmp_path / "missing-token")
    res = src.sync()
    assert not res.ok and res.error == f"cannot read git_token_file {tmp_path / 'missing-token'}: " \
                                       "No such file or directory"


@pytest.mark.parametrize("url", ["https://127.0.0.1:9/c.git", "ssh://git@127.0.0.1:9/srv/c.git"])
def test_server_down_is_connection_refused(url: str, make_source: MakeSource) -> None:
    # Port 9 (discard) on loopback: nothing listens there, the kernel refuses at once.
    src = make_source(url, git_ssh_command="ssh -o ConnectTimeout=5")
    res = src.sync()
    assert not res.ok and res.error is not None
    assert res.error.startswith(f"cannot fetch {url}: connection refused: the server is down"), res.error
