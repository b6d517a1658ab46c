"""sd_notify over a real unix datagram socket, as systemd listens for Type=notify services."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from controller.sd_notify import Notifier


def test_ready_status_watchdog_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        srv.settimeout(2)
        n = Notifier(str(path))
        assert n.ready("following main")
        assert srv.recv(4096) == b"READY=1\nSTATUS=following main"
        assert n.watchdog()
        assert srv.recv(4096) == b"WATCHDOG=1"
        assert n.stopping()
        assert srv.recv(4096) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier("/nonexistent").watchdog_interval == 60.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert Notifier("/nonexistent").watchdog_interval is None
