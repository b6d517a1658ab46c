"""Every `age` / `age-keygen` argument list (Debian's `age` package, the reference implementation).

Plaintext goes through stdin/stdout only: never argv, never a file. Errors carry age's stderr (which
never echoes the plaintext) and never the stdout of a decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from controller.command import run
from controller.errors import CommandError, HaGitopsError

AGE = "age"
AGE_KEYGEN = "age-keygen"
TIMEOUT = 20.0


class AgeError(HaGitopsError):
    """age failed: the message is age's own stderr, and what was being done."""

    def __init__(self, what: str, detail: str, *, not_a_recipient: bool = False) -> None:
        self.what = what
        self.detail = detail
        self.not_a_recipient = not_a_recipient
        super().__init__(f"{what}: {detail}" if detail else what)


def _stderr(text: str) -> str:
    lines = [ln.removeprefix("age: ").strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and "report unexpected" not in ln]
    return "; ".join(lines)[:500]


def _run(argv: Sequence[str], what: str, *, input: str | None = None, timeout: float = TIMEOUT) -> str:
    try:
        res = run(list(argv), input=input, check=False, timeout=timeout)
    except CommandError as exc:  # timeout or cannot start: argv holds no plaintext, stderr is age's
        raise AgeError(what, str(exc)) from None
    if res.returncode != 0:
        detail = _stderr(res.stderr)
        raise AgeError(what, detail or f"exited {res.returncode}",
                       not_a_recipient="no identity matched" in detail) from None
    return res.stdout


def encrypt(plaintext: str, recipients: Sequence[str], *, timeout: float = TIMEOUT) -> str:
    """ASCII-armored age file for these recipients (armor: a text file git diffs as a whole)."""
    if not recipients:
        raise AgeError("encrypt secrets", "no recipients: list them in cluster.toml [secrets] recipients")
    argv = [AGE, "--encrypt", "--armor"]
    for r in recipients:
        argv += ["-r", r]
    return _run(argv, "encrypt secrets", input=plaintext, timeout=timeout)


def decrypt(ciphertext: str, identity: Path, *, what: str = "decrypt secrets.age",
            timeout: float = TIMEOUT) -> str:
    if not identity.is_file():
        raise AgeError(what, f"age identity {identity} not found")
    return _run([AGE, "--decrypt", "-i", str(identity)], f"{what} with {identity}", input=ciphertext,
                timeout=timeout)


def recipient_of(identity: Path, *, timeout: float = TIMEOUT) -> str:
    """The public recipient (age1...) of an identity file."""
    return _run([AGE_KEYGEN, "-y", str(identity)], f"read age identity {identity}",
                timeout=timeout).strip().splitlines()[0]


def keygen(identity: Path, *, timeout: float = TIMEOUT) -> str:
    """Make an identity file (mode 0600) when there is none; return its recipient."""
    if not identity.exists():
        identity.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            _run([AGE_KEYGEN, "-o", str(identity)], f"make age identity {identity}", timeout=timeout)
        finally:
            os.umask(old)
        identity.chmod(0o600)
    return recipient_of(identity, timeout=timeout)
