"""Running external tools: argument lists only, always a timeout, stderr kept for the error."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.errors import CommandError


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
        input: str | None = None, check: bool = True, ok_codes: Sequence[int] = (0,),
        cwd: str | None = None) -> Result:
    """Run argv (never through a shell). Raises CommandError on a code outside ok_codes when check."""
    argv = [str(a) for a in argv]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, None, err, timeout=timeout) from exc
    except OSError as exc:
        raise CommandError(argv, None, str(exc)) from exc
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode not in ok_codes:
        raise CommandError(argv, proc.returncode, proc.stderr, proc.stdout)
    return result
