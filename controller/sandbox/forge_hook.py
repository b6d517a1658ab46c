"""The forge's post-receive hook: a GitHub-format push webhook to every agent of the sandbox.

git runs it inside the forge (its network namespace) after a push is stored. It must never hold up or
fail the push: it hands the deliveries to a detached process and returns; that process tries each
agent once with a short timeout and writes what happened to the forge's hook log. Stdlib only (it runs
on every push, in the forge).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FULL_NAME = "sandbox/cluster"
TIMEOUT = 2.0  # seconds per agent: a down agent costs the (detached) sender this, never the push


def push_events(stdin_text: str) -> list[tuple[str, str, str]]:
    """post-receive's input, "OLD NEW REF" per line -> the branch updates (tags and others are no push
    of a followed branch)."""
    out = []
    for line in stdin_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("refs/heads/"):
            out.append((parts[0], parts[1], parts[2]))
    return out


def payload(old: str, new: str, ref: str, full_name: str = FULL_NAME) -> bytes:
    """The part of GitHub's push event an agent reads."""
    return json.dumps({"ref": ref, "before": old, "after": new,
                       "repository": {"full_name": full_name}}).encode()


def signature(secret: bytes, body: bytes) -> str:
    """X-Hub-Signature-256: the HMAC-SHA256 of the body with the webhook secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def headers(secret: bytes, body: bytes) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature(secret, body),
            "Content-Type": "application/json", "User-Agent": "ha-gitops-sandbox-forge"}


def deliver(url: str, body: bytes, hdrs: dict[str, str], timeout: float = TIMEOUT) -> str:
    """One POST; what happened, in a few words (for the log)."""
    req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"not delivered: {reason}"


def send_all(config: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
    """Every event to every target, targets in parallel; one log line per delivery."""
    secret = Path(config["secret_file"]).read_bytes().strip()
    log_path = Path(config["log"])
    lock = threading.Lock()

    def one(url: str, old: str, new: str, ref: str) -> None:
        body = payload(old, new, ref, config.get("full_name", FULL_NAME))
        result = deliver(url, body, headers(secret, body), float(config.get("timeout", TIMEOUT)))
        with lock, log_path.open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {ref} {old[:12]}..{new[:12]} -> {url}: {result}\n")

    for old, new, ref in events:
        threads = [threading.Thread(target=one, args=(url, old, new, ref)) for url in config["targets"]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def main(argv: list[str]) -> int:
    """`forge_hook CONFIG` (git's post-receive: updates on stdin) or `forge_hook CONFIG --send` (the
    detached sender: the same lines on stdin)."""
    config_path = Path(argv[0])
    config = json.loads(config_path.read_text())
    text = sys.stdin.read()
    if argv[1:] == ["--send"]:
        send_all(config, push_events(text))
        return 0
    if not push_events(text):
        return 0
    log = open(config["log"], "ab")  # noqa: SIM115 - handed to the detached sender
    # A new session and no pipe of git's: the push (and `sandbox exec`, which waits for its output) ends
    # now, whatever the agents do.
    argv = [sys.executable, "-m", "controller.sandbox.forge_hook", str(config_path), "--send"]
    proc = subprocess.Popen(argv,
                            stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                            close_fds=True, env={**os.environ, "PYTHONPATH": config["pythonpath"]})
    log.close()
    assert proc.stdin is not None
    proc.stdin.write(text.encode())
    proc.stdin.close()
    print(f"sandbox forge: push webhook to {len(config['targets'])} agent(s) in the background "
          f"(log: {config['log']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
