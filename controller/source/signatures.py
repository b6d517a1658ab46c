"""Commit-signature verification against trust material the agent controls.

The agent rebuilds, from allowed_signers, a private GPG keyring (GNUPGHOME under cache_dir) and an ssh
allowed-signers file; git checks a commit with those (gpg.ssh.allowedSignersFile, $GNUPGHOME) and the
agent decides trust by fingerprint (decisions.signature_verdict), not by any user's keyring or trust db.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from controller.command import run
from controller.errors import CommandError, InputError
from controller.source.decisions import SignatureVerdict, normalise_fingerprint, signature_verdict

_FPR_RE = re.compile(r"^(?:0x)?[0-9A-Fa-f]{40}(?:[0-9A-Fa-f]{24})?$")
_SSH_KEY_RE = re.compile(r"^(?:ssh-|ecdsa-sha2-|sk-)\S+ [A-Za-z0-9+/=]{20,}")
_PRINCIPAL_RE = re.compile(r"^[\w.@+-]+$")
_SEP = "\x1f"


class Signatures:
    """Built once from the allowed_signers entries; verify() is then safe to call from any thread."""

    def __init__(self, home: Path, entries: list[str], *, timeout: float = 30.0) -> None:
        self.home = home
        self.gnupg_home = home / "gnupg"
        self.allowed_signers_file = home / "allowed_signers"
        self.timeout = timeout
        self.allowed_gpg: frozenset[str] = frozenset()
        self._build(entries)

    def _gpg(self, *args: str, check: bool = True) -> str:
        return run(["gpg", "--batch", "--no-tty", "--no-autostart", "--homedir", str(self.gnupg_home), *args],
                   timeout=self.timeout, check=check).stdout

    def _build(self, entries: list[str]) -> None:
        # From scratch every time: a key removed from the configuration must stop being trusted.
        shutil.rmtree(self.gnupg_home, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.gnupg_home.mkdir(mode=0o700)
        ssh_lines: list[str] = []
        fingerprints: set[str] = set()
        for n, entry in enumerate(entries, 1):
            if _FPR_RE.match(entry.replace(" ", "")):
                fingerprints.add(normalise_fingerprint(entry))
            elif _SSH_KEY_RE.match(entry):
                ssh_lines.append(_ssh_allowed_line(entry, n))
            elif entry.startswith("/"):
                fingerprints |= self._add_file(Path(entry), ssh_lines)
            else:
                raise InputError(f"allowed_signers entry {entry[:60]!r}: not a GPG fingerprint, an SSH "
                                 "public key or an absolute path", element="allowed_signers")
        known = self._keyring_fingerprints()
        missing = sorted(f for f in fingerprints if f not in known)
        if missing:
            raise InputError(f"GPG key(s) {', '.join(missing)} in allowed_signers are in no key file listed "
                             "there: add the public key file's path to allowed_signers",
                             element="allowed_signers")
        self.allowed_gpg = frozenset(fingerprints)
        tmp = self.allowed_signers_file.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in ssh_lines))
        tmp.replace(self.allowed_signers_file)

    def _add_file(self, path: Path, ssh_lines: list[str]) -> set[str]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read allowed signers file: {exc.strerror or exc}", file=str(path),
                             element="allowed_signers") from exc
        if data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK") or (data and data[0] & 0x80):
            try:
                shown = self._gpg("--with-colons", "--import-options", "show-only", "--import", str(path))
                self._gpg("--import", str(path))
            except CommandError as exc:
                raise InputError(f"not a usable GPG public key file: {exc.stderr.strip()[:300]}",
                                 file=str(path), element="allowed_signers") from exc
            return _primary_fingerprints(shown)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise InputError("neither a GPG key file nor an ssh allowed_signers file", file=str(path),
                             element="allowed_signers") from exc
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                ssh_lines.append(line.strip())
        return set()

    def _keyring_fingerprints(self) -> set[str]:
        out = self._gpg("--with-colons", "--list-keys", check=False)
        return {line.split(":")[9].upper() for line in out.splitlines() if line.startswith("fpr:")}

    def git_args(self) -> list[str]:
        """The `git -c ...` options that make git verify against our trust material."""
        return ["-c", f"gpg.ssh.allowedSignersFile={self.allowed_signers_file}", "-c", "gpg.program=gpg",
                "-c", "gpg.ssh.program=ssh-keygen"]

    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.gnupg_home)}

    def verify(self, git_dir: Path, sha: str) -> SignatureVerdict:
        raw = run(["git", "--git-dir", str(git_dir), "cat-file", "commit", sha], timeout=self.timeout).stdout
        ssh = "\ngpgsig -----BEGIN SSH SIGNATURE-----" in raw.split("\n\n", 1)[0]
        fmt = _SEP.join(["%G?", "%GS", "%GF", "%GP"])
        out = run(["git", "--git-dir", str(git_dir), *self.git_args(), "log", "-1", "--no-show-signature",
                   f"--format={fmt}", sha], timeout=self.timeout, env=self.env()).stdout
        code, signer, fpr, primary = ([*out.rstrip("\n").split(_SEP), "", "", "", ""])[:4]
        return signature_verdict(code, signer=signer, fingerprint=fpr, primary=primary,
                                 allowed_gpg=self.allowed_gpg, ssh=ssh)


def _ssh_allowed_line(key: str, n: int) -> str:
    # allowed_signers format: "principals [options] keytype base64 [comment]"; the principal is what
    # git reports as the signer, so use the key's comment when it is a plain name.
    parts = key.split()
    comment = parts[2] if len(parts) > 2 else ""
    principal = comment if _PRINCIPAL_RE.match(comment) else f"allowed-signer-{n}"
    return f'{principal} namespaces="git" {parts[0]} {parts[1]}'


def _primary_fingerprints(colons: str) -> set[str]:
    """Fingerprints of the primary keys (pub records) in `gpg --with-colons` output."""
    out: set[str] = set()
    after_pub = False
    for line in colons.splitlines():
        kind = line.split(":", 1)[0]
        if kind == "pub":
            after_pub = True
        elif kind == "fpr" and after_pub:
            out.add(line.split(":")[9].upper())
            after_pub = False
        elif kind in ("sub", "uid"):
            after_pub = False
    return out
