"""This node's Pacemaker secrets store, in cibsecret's layout (what pacemaker-execd reads).

    /var/lib/pacemaker/lrm/secrets/<resource>/<parameter>        the value and a newline
    /var/lib/pacemaker/lrm/secrets/<resource>/<parameter>.sign   md5 of the value and a newline

The CIB holds `lrm://` for the parameter; pacemaker-execd reads the file (trailing whitespace stripped),
checks its md5 against the .sign file, and hands the agent the value. Directories 0700, files 0600,
root's: as cibsecret leaves them (umask 0077). Values are compared and written here, never returned.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from controller.errors import HaGitopsError
from controller.secrets.model import store_sign

STORE_ROOT = Path("/var/lib/pacemaker/lrm/secrets")


class SecretStoreError(HaGitopsError):
    """The local store could not be read or written (names the file, never a value)."""


def _safe(part: str) -> str:
    if not part or "/" in part or part.startswith(".") or "\0" in part:
        raise SecretStoreError(f"cannot keep a secret for {part!r} in the secrets store (not a file name)")
    return part


class LocalSecretStore:
    def __init__(self, root: Path = STORE_ROOT) -> None:
        self.root = root

    def path(self, resource: str, param: str) -> Path:
        return self.root / _safe(resource) / _safe(param)

    def sign_of(self, resource: str, param: str) -> str | None:
        """The .sign of (resource, param) when the value beside it matches it; None: missing or not."""
        path = self.path(resource, param)
        try:
            value = path.read_text(errors="surrogateescape").rstrip()
            sign = path.with_name(path.name + ".sign").read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretStoreError(f"{path}: cannot read: {exc.strerror}") from None
        return sign if store_sign(value) == sign else None

    def signs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        return {k: self.sign_of(*k) for k in keys}

    def write(self, resource: str, param: str, value: str) -> None:
        path = self.path(resource, param)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._atomic(path, value + "\n")
            self._atomic(path.with_name(path.name + ".sign"), store_sign(value) + "\n")
        except OSError as exc:
            raise SecretStoreError(f"{path}: cannot write: {exc.strerror}") from None

    @staticmethod
    def _atomic(path: Path, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w", errors="surrogateescape") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
