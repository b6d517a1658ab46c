"""The sandbox's control protocol: one JSON object per line on a unix socket, one request and one answer
per connection (a node's init, the forge's init, the service_ctl client)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def serve(sock_path: Path, handle: Handler) -> None:
    """Answer requests on `sock_path` (0600) forever, each connection in a thread of its own."""
    if sock_path.exists():
        sock_path.unlink()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    sock_path.chmod(0o600)
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_answer_one, args=(conn, handle), daemon=True).start()


def _answer_one(conn: socket.socket, handle: Handler) -> None:
    with conn, conn.makefile("rw") as f:
        try:
            req = json.loads(f.readline() or "{}")
            resp = handle(req) if isinstance(req, dict) else {"ok": False, "error": "not a JSON object"}
        except Exception as exc:  # the control socket must outlive any bad request
            resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        f.write(json.dumps(resp) + "\n")
        f.flush()


def ask(sock_path: Path, req: dict[str, Any], *, timeout: float, who: str) -> dict[str, Any]:
    """One request; the answer (a JSON object), or {"ok": false} saying `who` did not answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock_path))
    with s, s.makefile("rw") as f:
        f.write(json.dumps(req) + "\n")
        f.flush()
        line = f.readline()
    resp = json.loads(line) if line else {"ok": False, "error": f"{who} did not answer"}
    if not isinstance(resp, dict):
        raise ValueError(f"not a JSON object: {line[:200]!r}")
    return resp
