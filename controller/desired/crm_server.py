"""A warm crmsh: imports crmsh once, then runs each `crm` command line in a child forked from here.

Started by controller/desired/crm_worker.py with crmsh's own interpreter (the shebang of /usr/sbin/crm)
and nothing of ours on its path: this file uses the standard library and crmsh only. A `crm` process
spends about half of a `configure load` importing crmsh and asking Pacemaker for resource-agent and
cluster-property metadata; here the import is paid once, and the metadata is held in crmsh's own
in-process caches, as an interactive `crm` session holds it. Every command still runs crmsh's real
code from its real entry point (`crmsh.main.run()`), in a fresh child with its own environment,
working directory, stdin (/dev/null), stdout and stderr.

Protocol: one JSON object per line. Requests on fd 0:
  {"argv": [...], "env": {...}, "cwd": "...", "timeout": seconds, "nice": n, "warm": "crm text"}
Replies on fd 1: {"rc": int|null, "stdout": "...", "stderr": "...", "timeout": bool}. The first line
written is {"ready": true, "pid": PID}. `warm` (optional) names crm text whose agents' metadata the
server loads after replying, so the next conversion finds it cached.

The metadata can go stale (an agent package upgraded): after MAX_AGE seconds, when idle, the server
re-executes itself, which drops every cache; crmsh's own cache ages out after the same 600 s.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from types import ModuleType
from typing import Any

MAX_AGE = 600.0
_PRIMITIVE = re.compile(r"^\s*primitive\s+\S+\s+(\S+)", re.M)
Message = dict[str, Any]  # one line of the protocol, decoded JSON


def _child(req: Message, out_path: str, err_path: str, main_mod: ModuleType) -> None:
    """Runs in the forked child: become a fresh `crm` process and exit with its code."""
    rc = 70
    try:
        if req.get("nice"):
            os.nice(int(req["nice"]))
        os.environ.clear()
        os.environ.update(req.get("env") or {})
        os.chdir(req.get("cwd") or "/")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, out_path), (2, err_path)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's own /dev/null
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        sys.argv = list(req["argv"])
        try:
            result = main_mod.run()
            rc = result if isinstance(result, int) else (0 if result is None else 1)
        except SystemExit as exc:
            code = exc.code
            rc = code if isinstance(code, int) else (0 if code is None else 1)
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
        atexit._run_exitfuncs()  # what the interpreter does at exit: crmsh removes its temp files here
    except BaseException:  # anything at all becomes stderr and a failing exit code
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc & 0xFF)


def _wait(pid: int, timeout: float) -> int | None:
    """Exit code of the child, or None after killing its process group when the timeout ran out."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.005))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_one(req: Message, scratch: str, main_mod: ModuleType, close_fds: tuple[int, ...] = ()) -> Message:
    fd_out, out_path = tempfile.mkstemp(dir=scratch, suffix=".out")
    fd_err, err_path = tempfile.mkstemp(dir=scratch, suffix=".err")
    os.close(fd_out)
    os.close(fd_err)
    try:
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            for fd in close_fds:
                os.close(fd)
            _child(req, out_path, err_path, main_mod)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also here: no race with a kill before the child ran setpgid
        rc = _wait(pid, float(req.get("timeout") or 120.0))
        with open(out_path, errors="replace") as f:
            stdout = f.read()
        with open(err_path, errors="replace") as f:
            stderr = f.read()
        return {"rc": rc, "stdout": stdout, "stderr": stderr, "timeout": rc is None}
    finally:
        for p in (out_path, err_path):
            with contextlib.suppress(OSError):
                os.unlink(p)


def warm(text: str) -> None:
    """Load into crmsh's caches the metadata a `configure load` of this text asks for, in the environment
    crmsh's main sets up for itself (its PATH includes Pacemaker's daemon directory)."""
    from crmsh import main as main_mod
    from crmsh import ra

    saved = dict(os.environ)
    try:
        main_mod.envsetup()
        _warm(ra, text)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _warm(ra: ModuleType, text: str) -> None:
    for getter in (ra.get_properties_meta, ra.get_stonithd_meta, ra.ra_classes):
        try:
            getter()
        except Exception:  # warming is best effort: crmsh asks again if it must
            continue
    for agent in sorted(set(_PRIMITIVE.findall(text))):
        if agent.startswith("@"):
            continue  # a template reference, not an agent
        try:
            info = ra.get_ra(agent)
            info.meta()
            info.params()
            info.actions()
        except Exception:
            continue


class Channel:
    """The request/reply pipes, on their own descriptors (fds 0 and 1 are the children's)."""

    def __init__(self) -> None:
        self.fd_in = os.dup(0)
        self.fd_out = os.dup(1)
        self._buf = b""

    def write(self, obj: Message) -> None:
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(self.fd_out, data):]

    def readline(self, timeout: float) -> bytes | None:
        """One line; b"" at end of input; None when nothing arrived within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd_in], [], [], left)[0]:
                return None
            chunk = os.read(self.fd_in, 65536)
            if not chunk:
                return b""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def restore(self) -> None:
        """Put the pipes back on fds 0 and 1 (before re-executing)."""
        os.dup2(self.fd_in, 0)
        os.dup2(self.fd_out, 1)


def main() -> int:
    channel = Channel()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # anything crmsh prints while the server imports it goes to our stderr
    started = time.monotonic()
    max_age = float(sys.argv[sys.argv.index("--max-age") + 1]) if "--max-age" in sys.argv else MAX_AGE
    scratch = tempfile.mkdtemp(prefix="ha-gitops-crm-server-")
    warm_file = os.path.join(os.environ.get("HOME", scratch), "warm.crm")
    from crmsh import log

    log.setup_logging()
    from crmsh import main as main_mod

    if "--rewarm" in sys.argv[1:] and os.path.exists(warm_file):
        with open(warm_file) as f:
            warm(f.read())
    channel.write({"ready": True, "pid": os.getpid()})
    while True:
        line = channel.readline(max(max_age - (time.monotonic() - started), 0.0))
        if line is None:
            # Idle and older than MAX_AGE: start afresh (same PID, same pipes), caches rebuilt.
            shutil.rmtree(scratch, ignore_errors=True)
            channel.restore()
            os.execv(sys.executable, [sys.executable, "-I", os.path.abspath(__file__), "--rewarm",
                                      "--max-age", str(max_age)])
        if not line:
            shutil.rmtree(scratch, ignore_errors=True)
            return 0  # the agent went away
        req: Message = {}
        try:
            req = json.loads(line)
            reply = run_one(req, scratch, main_mod, (channel.fd_in, channel.fd_out))
        except Exception as exc:  # a broken request is an answer, not the end
            reply = {"rc": None, "stdout": "", "stderr": f"crm server: {exc}", "timeout": False}
        channel.write(reply)
        text = req.get("warm") if isinstance(req, dict) else None
        if text:
            try:
                with open(warm_file, "w") as f:
                    f.write(text)
            except OSError:
                pass
            warm(text)


if __name__ == "__main__":
    sys.exit(main())
