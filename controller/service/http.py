"""The agent's one HTTP listener (`http_listen`): forge webhooks, Prometheus metrics, a liveness check.

    POST /hooks/github | /hooks/gitlab | /hooks/gitea | /hooks/generic   a push: fetch now
    GET  /metrics                                                        Prometheus exposition format
    GET  /healthz                                                        200 while the agent's loop lives

The standard library's ThreadingHTTPServer in a daemon thread is enough: a handful of requests a minute,
none of which does work of its own (a webhook only raises the agent's trigger flag; the pass runs on the
agent's worker). What a delivery means is decided in controller/source/webhooks.py (pure).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from controller.errors import InputError
from controller.service.metrics import CONTENT_TYPE, AgentMetrics
from controller.settings import AgentSettings
from controller.source.webhooks import HookVerdict, Provider, judge, oversized

log = logging.getLogger("ha-gitops.http")

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request: a slow one does not hold a thread
HOOKS = {f"/hooks/{p.value}": p for p in Provider}
DRAIN_MAX = 32 * 1024 * 1024  # bytes of a refused body read and dropped (GitHub caps payloads at 25 MB)


def load_webhook_secret(settings: AgentSettings) -> bytes | None:
    """The webhook secret from its file (read now, once) or the settings; None: webhooks are off."""
    path = settings.webhook_secret_file
    if path is None:
        if settings.webhook_secret is None:
            return None
        secret = settings.webhook_secret.get_secret_value().strip()
        if not secret:
            raise InputError("webhook_secret is empty", element="webhook_secret")
        return secret.encode()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read the webhook secret: {why}", file=str(path),
                         element="webhook_secret_file") from exc
    if not text:
        raise InputError("the webhook secret file is empty", file=str(path), element="webhook_secret_file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others (mode %o): chmod 600 it", path, stat.S_IMODE(mode))
    return text.encode()


class AgentHTTP:
    """The listener of one agent. `trigger(reason)` is the agent's own trigger; `alive()` says whether its
    loop still makes progress (for /healthz)."""

    def __init__(self, address: tuple[str, int], *, metrics: AgentMetrics, trigger: Callable[[str], None],
                 alive: Callable[[], tuple[bool, dict[str, Any]]], branch: str, secret: bytes | None,
                 max_body: int) -> None:
        self.metrics = metrics
        self.trigger = trigger
        self.alive = alive
        self.branch = branch
        self.secret = secret
        self.max_body = max_body
        self._server = _Server(address, _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> AgentHTTP:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="http", daemon=True)
        self._thread.start()
        log.info("HTTP on %s:%d (/hooks/*, /metrics, /healthz)%s", *self.address,
                 "" if self.secret else "; webhooks off: no webhook secret set")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def hook(self, provider: Provider, headers: dict[str, str], body: bytes) -> HookVerdict:
        return self.record(provider, judge(provider, headers, body, secret=self.secret, branch=self.branch,
                                           max_body=self.max_body))

    def record(self, provider: Provider, verdict: HookVerdict) -> HookVerdict:
        """Count the delivery, log it, and trigger a fetch when the verdict says so."""
        self.metrics.observe_webhook(provider, verdict.action)
        if verdict.action == "trigger":
            log.info("%s webhook: push to %s%s: fetching", provider.value, self.branch,
                     f" ({verdict.after[:12]})" if verdict.after else "")
            self.trigger("webhook")
        elif verdict.action == "reject":
            log.warning("%s webhook rejected (%d): %s", provider.value, verdict.status, verdict.message)
        else:
            log.debug("%s webhook ignored: %s", provider.value, verdict.message)
        return verdict


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves its own name (socket.getfqdn): a DNS wait at start for nothing.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def _handler(app: AgentHTTP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT
        server_version = "ha-gitops"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.client_address[0], *args)

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, (json.dumps({"error": message}) + "\n").encode())

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, app.metrics.exposition(), CONTENT_TYPE)
            elif path == "/healthz":
                ok, details = app.alive()
                self._send(200 if ok else 503, (json.dumps({"ok": ok, **details}) + "\n").encode())
            elif path in HOOKS:
                self._error(405, "webhooks are POSTed")
            else:
                self._error(404, f"no such path {path!r} (try /metrics, /healthz, /hooks/github)")

        do_HEAD = do_GET

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            provider = HOOKS.get(path)
            if provider is None:
                self._error(404 if path not in ("/metrics", "/healthz") else 405, f"no webhook at {path!r}")
                return
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True
                self._error(411, "send a Content-Length (chunked bodies are not accepted)")
                return
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                self._error(400, "bad Content-Length")
                return
            if length < 0:
                self._error(400, "bad Content-Length")
                return
            big = oversized(length, app.max_body)
            if big is not None:
                # A sender writes its whole body before it reads the answer: read a refused body into
                # nothing (up to DRAIN_MAX, a forge's largest payload) so the 413 reaches it, else close.
                if length <= DRAIN_MAX:
                    _drain(self.rfile, length)
                self.close_connection = True
                verdict = app.record(provider, big)
                self._send(verdict.status, verdict.body)
                return
            body = self.rfile.read(length) if length else b""
            verdict = app.hook(provider, dict(self.headers.items()), body)
            self._send(verdict.status, verdict.body)

    return Handler


def _drain(stream: io.BufferedIOBase, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)


def liveness(beat_age: float, *, stopping: bool, bound: float, last_outcome: str | None) -> tuple[bool,
                                                                                              dict[str, Any]]:
    """/healthz: alive while the agent's loop has beaten within `bound` seconds (it beats at least every
    30 s when idle, and before each pass; a pass may take minutes) and is not shutting down."""
    ok = not stopping and beat_age <= bound
    return ok, {"heartbeat_age": round(beat_age, 1), "stopping": stopping, "last_outcome": last_outcome}
