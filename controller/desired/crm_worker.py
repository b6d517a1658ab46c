"""The agent's warm crmsh: `crm` command lines run by crm_server.py, forked from an imported crmsh.

A one-shot `crm -F configure load replace` costs about a second inside a busy sandbox node, most of it
importing crmsh and reading resource-agent metadata; the DC's agent pays it for every push. The warm
server keeps crmsh imported and its metadata caches filled, and forks a fresh child per command line,
so the conversion is still crmsh's own code, from its own entry point.

`WarmCrm.run` is a controller.desired.crm.CrmRunner. When the server cannot be started or dies, the
command runs as a one-shot `crm` (and the server is started again at the next call): slower, never
different.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.command import Result, run
from controller.errors import CommandError

Message = dict[str, Any]  # one line of crm_server's protocol, decoded JSON

log = logging.getLogger(__name__)

SERVER = Path(__file__).with_name("crm_server.py")
CRM = Path("/usr/sbin/crm")
START_TIMEOUT = 60.0


def crmsh_interpreter(crm: Path = CRM) -> str:
    """The interpreter crmsh is installed for: the `#!` line of the crm script."""
    try:
        first = crm.read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        first = ""
    if first.startswith("#!"):
        parts = first[2:].split()
        if parts and parts[0].endswith("/env") and len(parts) > 1:
            return parts[1]
        if parts:
            return parts[0]
    return "/usr/bin/python3"


class WarmCrm:
    """One crm server process, owned by this object: started by start() or the first run(), started
    again by run() when it died, stopped by close(). Closed (after close(), or from the start without
    autostart), run() uses a new crm process and starts nothing until open()."""

    def __init__(self, *, max_age: float | None = None, interpreter: str | None = None,
                 autostart: bool = True) -> None:
        self.max_age = max_age  # seconds before the idle server starts afresh (default: the server's)
        self.interpreter = interpreter
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._home: tempfile.TemporaryDirectory[str] | None = None
        self._closed = not autostart
        self.started_count = 0  # how many servers this object started (restarts show up here)
        self.fresh_starts = 0  # how often a server re-executed itself (after max_age idle)

    # ------------------------------------------------------------------ the server process
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> None:
        self._home = tempfile.TemporaryDirectory(prefix="ha-gitops-crm-home-")
        home = self._home.name
        env = {**os.environ, "HOME": home, "XDG_CACHE_HOME": f"{home}/.cache",
               "XDG_CONFIG_HOME": f"{home}/.config"}
        argv = [self.interpreter or crmsh_interpreter(), "-I", str(SERVER)]
        if self.max_age is not None:
            argv += ["--max-age", str(self.max_age)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, env=env, cwd=home, close_fds=True)
        self._buf = b""
        self.started_count += 1
        reply = self._read(START_TIMEOUT)
        if not reply.get("ready"):
            raise CommandError(argv, None, f"crm server did not start: {reply}")

    def _read(self, timeout: float) -> Message:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"crm server gave no answer within {timeout:g}s")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError("crm server exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise EOFError(f"crm server sent {line[:200]!r}, not a JSON object")
        return reply

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()  # our own child, by its PID
            proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._home is not None:
            self._home.cleanup()
            self._home = None

    @property
    def kept(self) -> bool:
        """Whether this object keeps a server (open), running or to be started by the next run()."""
        return not self._closed

    def close(self) -> None:
        """Stop the server; later calls run crm as a new process until open()."""
        with self._lock:
            self._closed = True
            self._stop()

    def open(self) -> None:
        """Keep a server again (started by start() or the next run())."""
        with self._lock:
            self._closed = False

    def start(self) -> None:
        """Start the server now, unless closed (the agent does, so the first push does not pay for it)."""
        with self._lock:
            if not self._closed and self.pid is None:
                self._stop()
                self._start()

    # ------------------------------------------------------------------ one command line
    def run(self, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
            check: bool = True, warm: str | None = None, nice: int = 0) -> Result:
        """Run a `crm` command line in the warm server, like controller.command.run would run it.

        `warm`: crm text whose agents' metadata the server loads afterwards, for the next call.
        `nice`: how much to lower the command's CPU priority."""
        argv = [str(a) for a in argv]
        request = {"argv": argv, "env": {**os.environ, **(env or {})}, "cwd": os.getcwd(),
                   "timeout": timeout, "warm": warm, "nice": nice}
        reply: Message | None = None
        with self._lock:
            if self._closed:
                return run(argv, timeout=timeout, env=env, check=check)
            try:
                if self.pid is None:
                    self._stop()
                    self._start()
                assert self._proc is not None and self._proc.stdin is not None
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
                while True:  # skip the "ready" of a server that re-executed itself while idle
                    reply = self._read(timeout + 10.0)
                    if not reply.get("ready"):
                        break
                    self.fresh_starts += 1
            except (OSError, EOFError, TimeoutError, ValueError, CommandError) as exc:
                log.warning("warm crm server unavailable (%s): running crm once", exc)
                self._stop()
                reply = None
        if reply is None:
            return run(argv, timeout=timeout, env=env, check=check)
        if reply.get("timeout"):
            raise CommandError(argv, None, reply.get("stderr", ""), timeout=timeout)
        result = Result(argv, int(reply["rc"]) if reply.get("rc") is not None else -1,
                        reply.get("stdout", ""), reply.get("stderr", ""))
        if check and result.returncode != 0:
            raise CommandError(argv, result.returncode, result.stderr, result.stdout)
        return result
