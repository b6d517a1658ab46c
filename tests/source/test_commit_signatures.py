"""Commit-signature verification with real GPG and SSH keys: good, unsigned, unknown signer."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.command import run
from controller.errors import InputError
from controller.source.git import GitSource
from controller.source.models import SignatureStatus
from tests.source.sourcetestlib import Upstream

MakeSource = Callable[..., GitSource]

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("ssh-keygen")),
                                reason="needs gnupg and openssh-client")


@dataclass
class GpgKey:
    home: Path
    fpr: str
    public: Path  # ASCII-armored public key file

    def sign(self) -> tuple[list[str], dict[str, str]]:
        opts = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.fpr}"]
        return opts, {"GNUPGHOME": str(self.home)}


@dataclass
class SshKey:
    private: Path
    public_line: str

    def sign(self) -> tuple[list[str], dict[str, str]]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.private}.pub"], {}


@pytest.fixture(scope="module")
def keys() -> Iterator[dict[str, GpgKey | SshKey]]:
    # A short path: gpg-agent's socket lives in GNUPGHOME and socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="hagk-", dir="/tmp"))
    out: dict[str, GpgKey | SshKey] = {}
    homes = []
    for name in ("alice", "mallory"):
        home = root / name
        home.mkdir(mode=0o700)
        homes.append(home)
        gpg = ["gpg", "--batch", "--homedir", str(home)]
        run([*gpg, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.org>", "ed25519",
             "sign", "never"], timeout=60)
        colons = run([*gpg, "--with-colons", "--list-keys"], timeout=30).stdout
        fpr = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
        public = root / f"{name}.asc"
        public.write_text(run([*gpg, "--armor", "--export", fpr], timeout=30).stdout)
        out[name] = GpgKey(home, fpr, public)
    for name in ("bob", "eve"):
        key = root / name
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@example.org", "-f", str(key)],
            timeout=30)
        out[name] = SshKey(key, (root / f"{name}.pub").read_text().strip())
    yield out
    for home in homes:  # the gpg-agents the signing started
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], timeout=30, check=False)
    shutil.rmtree(root, ignore_errors=True)


def commit_signed(up: Upstream, key: GpgKey | SshKey | None, text: str) -> str:
    if key is None:
        return up.commit({"cluster/cib.crm": text}, f"unsigned {text}")
    opts, env = key.sign()
    return up.commit({"cluster/cib.crm": text}, f"signed {text}", sign=opts, env=env)


def test_gpg_good_unsigned_unknown(upstream: Upstream, make_source: MakeSource,
                                   keys: dict[str, GpgKey | SshKey]) -> None:
    alice, mallory = keys["alice"], keys["mallory"]
    assert isinstance(alice, GpgKey) and isinstance(mallory, GpgKey)
    src = make_source(str(upstream.bare), allowed_signers=[str(alice.public)], enforce_signatures=True)
    assert src.signatures is not None and alice.fpr in src.signatures.allowed_gpg

    good = commit_signed(upstream, alice, "a")
    res = src.sync()
    assert res.revision is not None and res.revision.sha == good
    assert res.revision.signature is SignatureStatus.GOOD, res.revision
    assert res.revision.signer == "alice <alice@example.org>"
    assert res.revision.signature_detail == alice.fpr
    assert not res.refused

    commit_signed(upstream, mallory, "m")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNTRUSTED
    assert res.refused and res.refusal is not None and "not signed by an allowed signer" in res.refusal

    commit_signed(upstream, None, "u")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNSIGNED
    assert res.refused and res.refusal == "the commit is not signed"
    # The user's own keyring is not consulted: the agent's keyring has alice only.
    listed = run(["gpg", "--batch", "--homedir", str(src.signatures.gnupg_home), "--with-colons",
                  "--list-keys"], timeout=30).stdout
    assert alice.fpr in listed and mallory.fpr not in listed


def test_gpg_fingerprint_entry_needs_its_key(upstream: Upstream, make_source: MakeSource,
                                             keys: dict[str, GpgKey | SshKey]) -> None:
    alice = keys["alice"]
    assert isinstance(alice, GpgKey)
    with pytest.raises(InputError, match=f"{alice.fpr}.*in no key file"):
        make_source(str(upstream.bare), allowed_signers=[alice.fpr])


def test_ssh_good_unsigned_unknown(upstream: Upstream, make_source: MakeSource,
                                   keys: dict[str, GpgKey | SshKey]) -> None:
    bob, eve = keys["bob"], keys["eve"]
    assert isinstance(bob, SshKey) and isinstance(eve, SshKey)
    src = make_source(str(upstream.bare), allowed_signers=[bob.public_line], enforce_signatures=True)

    commit_signed(upstream, bob, "b")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.GOOD, res.revision
    assert res.revision.signer == "bob@example.org" and not res.refused
    assert res.revision.signature_detail is not None and res.revision.signature_detail.startswith("SHA256:")

    commit_signed(upstream, eve, "e")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNTRUSTED
    assert res.refused

    commit_signed(upstream, None, "u")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNSIGNED and res.refused


def test_mixed_signers_from_files_and_report_only(upstream: Upstream, make_source: MakeSource,
                                                  keys: dict[str, GpgKey | SshKey], tmp_path: Path) -> None:
    alice, eve = keys["alice"], keys["eve"]
    assert isinstance(alice, GpgKey) and isinstance(eve, SshKey)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"# the release team\neve@example.org {eve.public_line}\n")
    # enforce_signatures False: verified and recorded, never refused (require_signed = false).
    src = make_source(str(upstream.bare), allowed_signers=[str(allowed), str(alice.public)])
    commit_signed(upstream, eve, "e")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.GOOD
    assert res.revision.signer == "eve@example.org"
    commit_signed(upstream, alice, "a")
    assert src.sync().revision.signature is SignatureStatus.GOOD
    commit_signed(upstream, None, "u")
    res = src.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNSIGNED
    assert not res.refused


def test_keyring_rebuilt_when_a_signer_is_removed(upstream: Upstream, make_source: MakeSource,
                                                  keys: dict[str, GpgKey | SshKey]) -> None:
    alice, bob = keys["alice"], keys["bob"]
    assert isinstance(alice, GpgKey) and isinstance(bob, SshKey)
    commit_signed(upstream, alice, "a")
    first = make_source(str(upstream.bare), allowed_signers=[str(alice.public)], enforce_signatures=True)
    assert first.sync().revision.signature is SignatureStatus.GOOD
    first.close()
    # Same cache_dir, alice no longer listed: her key must be gone from the agent's keyring.
    second = make_source(str(upstream.bare), allowed_signers=[bob.public_line], enforce_signatures=True)
    res = second.sync()
    assert res.revision is not None and res.revision.signature is SignatureStatus.UNTRUSTED and res.refused
