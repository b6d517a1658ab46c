"""A desired folder's secrets.age: decrypt it to {name: value}, write it back encrypted (shell)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from controller.limits import DESIRED_FILE_LIMITS
from controller.secrets import age
from controller.secrets.model import SECRETS_FILE, SecretsError, parse_plaintext, render_plaintext

MAX_BYTES = DESIRED_FILE_LIMITS[SECRETS_FILE]


def secrets_path(folder: Path) -> Path:
    return folder / SECRETS_FILE


def read_ciphertext(folder: Path) -> str | None:
    path = secrets_path(folder)
    if not path.exists():
        return None
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SecretsError(f"larger than {MAX_BYTES} bytes", file=str(path))
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretsError(f"cannot read: {exc}", file=str(path)) from exc


def decrypt_text(ciphertext: str, identity: Path, *, source: str) -> dict[str, str]:
    try:
        text = age.decrypt(ciphertext, identity, what=f"decrypt {source}")
    except age.AgeError as exc:
        cause = ("this identity is not one of its recipients" if exc.not_a_recipient else exc.detail)
        raise SecretsError(f"cannot decrypt with {identity}: {cause}", file=source) from None
    return parse_plaintext(text, source=source)


def read_secrets(folder: Path, identity: Path) -> dict[str, str]:
    """{name: value} of folder/secrets.age ({} when there is no such file)."""
    text = read_ciphertext(folder)
    if text is None:
        return {}
    return decrypt_text(text, identity, source=str(secrets_path(folder)))


def write_secrets(folder: Path, secrets: Mapping[str, str], recipients: list[str]) -> Path:
    """Encrypt to recipients and replace folder/secrets.age atomically."""
    path = secrets_path(folder)
    armored = age.encrypt(render_plaintext(secrets), recipients)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".secrets.age.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(armored)
        os.chmod(tmp, 0o644)  # ciphertext: as readable as the rest of the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
