"""A real HTTP receiver for notification tests: `python -m tests.notify_receiver ADDR PORT FILE`.

Answers every POST with 200 and appends its JSON body as one line to FILE (fsync'd, so a test reading
the file sees each delivery once it is answered). Stopped by its PID (SIGTERM).
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


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
