"""Apprise in a process of its own: `python -m controller.notify_child`, one JSON request on stdin, one
JSON answer on stdout (controller/notify_send.py runs it).

Why a child: Apprise loads every one of its plugins (about 120 modules, 16 MB) the first time it parses
a URL, and Python never gives that memory back. The agent sends a notification a few times a day and
must stay small while idle, so the agent never imports Apprise; each check or delivery costs one short
process instead. URLs travel on stdin, never on argv: they may hold credentials.

Requests: {"op": "check", "urls": [...]} -> {"problems": [null | "why", ...]};
{"op": "send", "url", "title", "body", "type", "timeout"} -> {"error": null | "why"} (scrubbed).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def _apprise() -> Any:
    import apprise

    logging.getLogger("apprise").propagate = False
    return apprise


def check(urls: list[str]) -> list[str | None]:
    from controller.notifications import scheme

    apprise = _apprise()
    out: list[str | None] = []
    for url in urls:
        with apprise.LogCapture(level=logging.ERROR):  # Apprise logs the URL it rejects: not in our logs
            plugin = apprise.Apprise.instantiate(url)
        out.append(None if plugin is not None else (
            f"Apprise cannot send to this URL: the scheme {scheme(url)!r} is unknown, or the URL lacks what "
            "that service needs (see https://appriseit.com/services/)"))
    return out


def send(url: str, title: str, body: str, notify_type: str, timeout: float) -> str | None:
    from controller.notifications import scrub

    apprise = _apprise()
    with apprise.LogCapture(level=logging.ERROR):
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return check([url])[0]
    # Connect and read timeouts (Apprise's cto/rto, 4 s by default): one delivery never hangs.
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    shown = str(plugin.url(privacy=True))
    try:
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = plugin.notify(body=body, title=title, notify_type=notify_type)
        logged = [ln.split(" - ", 2)[-1] for ln in captured.getvalue().splitlines() if ln.strip()]
    except Exception as exc:  # a plugin's bug is this delivery's error, said once
        ok, logged = False, [f"{type(exc).__name__}: {exc}"]
    if ok:
        return None
    why = "; ".join(logged[-2:]) or "the service did not accept the notification"
    return scrub(why, url, shown)


def main() -> None:
    req = json.loads(sys.stdin.read())
    if req.get("op") == "check":
        answer: dict[str, Any] = {"problems": check(list(req["urls"]))}
    else:
        answer = {"error": send(req["url"], req["title"], req["body"], req["type"], float(req["timeout"]))}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
