"""A test double of the forges' HTTP APIs (GitHub issue comments, GitLab merge request notes), on loopback:
what deploy/ci/pr_comment.py talks to. It stands in for the forge, not for ha-gitops."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

CI_DIR = Path(__file__).resolve().parents[2] / "deploy" / "ci"

TOKEN = "t0ken"
GITHUB_THREAD = re.compile(r"^/api/v3/repos/(?P<project>[^/]+/[^/]+)/issues/(?P<n>\d+)/comments$")
GITHUB_COMMENT = re.compile(r"^/api/v3/repos/(?P<project>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$")
GITLAB_THREAD = re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/merge_requests/(?P<n>\d+)/notes$")
GITLAB_NOTE = re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/merge_requests/(?P<n>\d+)/notes/(?P<id>\d+)$")


class Forge:
    """Comments per thread ("github:owner/repo#7", "gitlab:42!7"), and every request seen."""

    def __init__(self) -> None:
        self.threads: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.next_id = 1000
        self.lock = threading.Lock()

    def add(self, thread: str, body: str) -> int:
        self.next_id += 1
        self.threads.setdefault(thread, []).append({"id": self.next_id, "body": body})
        return self.next_id

    def bodies(self, thread: str) -> list[str]:
        return [c["body"] for c in self.threads.get(thread, [])]


def _handler(forge: Forge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, code: int, data: Any) -> None:
            raw = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            with forge.lock:
                forge.requests.append((method, self.path))
                github = url.path.startswith("/api/v3/")
                authorised = self.headers.get("Authorization") == f"Bearer {TOKEN}" if github \
                    else self.headers.get("PRIVATE-TOKEN") == TOKEN
                if not authorised:
                    return self._reply(401, {"message": "Bad credentials"})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                for pattern, kind in ((GITHUB_THREAD, "github"), (GITLAB_THREAD, "gitlab")):
                    m = pattern.match(url.path)
                    if m:
                        thread = f"github:{m['project']}#{m['n']}" if kind == "github" \
                            else f"gitlab:{m['project']}!{m['n']}"
                        if method == "GET":
                            q = parse_qs(url.query)
                            per, page = int(q["per_page"][0]), int(q["page"][0])
                            items = forge.threads.get(thread, [])
                            return self._reply(200, items[(page - 1) * per:page * per])
                        if method == "POST":
                            cid = forge.add(thread, body["body"])
                            return self._reply(201, {"id": cid, "body": body["body"]})
                for pattern, verb in ((GITHUB_COMMENT, "PATCH"), (GITLAB_NOTE, "PUT")):
                    m = pattern.match(url.path)
                    if m and method == verb:
                        for comments in forge.threads.values():
                            for c in comments:
                                if c["id"] == int(m["id"]):
                                    c["body"] = body["body"]
                                    return self._reply(200, c)
                        return self._reply(404, {"message": "Not Found"})
                return self._reply(404, {"message": f"no route {method} {url.path}"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@contextmanager
def forge_server() -> Iterator[tuple[Forge, str]]:
    """(the forge's state, its base URL http://127.0.0.1:PORT)."""
    forge = Forge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(forge))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield forge, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def github_env(url: str) -> dict[str, str]:
    return {"GITHUB_API_URL": f"{url}/api/v3", "GITHUB_REPOSITORY": "ops/cluster", "GITHUB_TOKEN": TOKEN}


def gitlab_env(url: str) -> dict[str, str]:
    return {"CI_API_V4_URL": f"{url}/api/v4", "CI_PROJECT_ID": "42", "CI_MERGE_REQUEST_IID": "7",
            "GITLAB_TOKEN": TOKEN}
