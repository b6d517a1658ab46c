"""systemd's notify protocol (sd_notify(3)): READY=1, STATUS=..., WATCHDOG=1 on $NOTIFY_SOCKET.

The protocol is one datagram on a unix socket; linking libsystemd (systemd-python needs a compiler and
headers) would buy nothing. Without $NOTIFY_SOCKET (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, socket_path: str | None = None) -> None:
        self.path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        enabled = usec is not None and usec.isdigit() and (pid is None or pid == str(os.getpid()))
        # Ping at half the interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval: float | None = int(usec) / 2e6 if enabled and usec else None

    def send(self, *fields: str) -> bool:
        if not self.path:
            return False
        addr = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            try:
                s.sendto("\n".join(fields).encode(), addr)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
