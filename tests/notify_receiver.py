"""A real HTTP receiver for notification tests: `python -m tests.notify_receiver ADDR PORT FILE`.

Answers every POST with 200 and appends its JSON body as one line to FILE (fsync'd, so a test reading
the file sees each delivery once it is answered). `Receiver` runs it as a process of the test's own
(in a network namespace of the sandbox, or on loopback), stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_EVENT_ID = re.compile(r"^event id: (\S+)", re.M)


class Receiver:
    """The receiver as a process: started, stopped (the receiver "down") and started again on one port."""

    def __init__(self, addr: str, port: int, out: Path, *, netns: Path | None = None) -> None:
        self.addr, self.port, self.out, self.netns = addr, port, out, netns
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "tests.notify_receiver", self.addr, str(self.port), str(self.out)]
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns}", "--", *argv]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "listening"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def messages(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def event_ids(self) -> list[str]:
        """The event id of every message received (the body names it), in order of arrival."""
        return [m.group(1) for msg in self.messages() if (m := _EVENT_ID.search(str(msg.get("message", ""))))]


def main(addr: str, port: int, out: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                record = json.loads(body)
            except ValueError:
                record = {"raw": body.decode(errors="replace")}
            record["_path"] = self.path
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = HTTPServer((addr, port), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
