"""The source's pure decisions: backoff, retry state, signature verdicts, refusals, remotes, diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.source.decisions import (
    RetryState,
    backoff_delay,
    debounce_deadline,
    folder_changed,
    local_repo_path,
    parse_name_status,
    redact_url,
    refusal,
    signature_verdict,
)
from controller.source.models import ChangedFile, SignatureStatus

FPR = "8E1C80F4F81CDAF5FAA93E3B88B4949EBAB10D2B"
SUB = "1111111111111111111111111111111111111111"


def test_backoff_doubles_caps_and_jitters_down() -> None:
    assert [backoff_delay(n, 5, 300, rnd=0.0) for n in range(0, 9)] == [0, 5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff_delay(1000, 5, 300, rnd=0.0) == 300  # no overflow
    assert backoff_delay(3, 5, 300, rnd=0.999) == pytest.approx(20 * 0.8, rel=1e-3)
    assert all(16 <= backoff_delay(3, 5, 300, rnd=r / 10) <= 20 for r in range(10))


def test_retry_state() -> None:
    s = RetryState()
    assert s.due(0) and s.retry_in(0) is None
    s = s.failed(100.0, 5, 300, rnd=0.0)
    assert (s.failures, s.next_attempt) == (1, 105.0)
    assert not s.due(104.9) and s.due(105.0) and s.retry_in(101.0) == 4.0
    s = s.failed(105.0, 5, 300, rnd=0.0)
    assert s.next_attempt == 115.0


def test_folder_changed_by_tree_id() -> None:
    assert not folder_changed("t1", "t1", had_previous=True)
    assert folder_changed("t1", "t2", had_previous=True)
    assert folder_changed(None, "t1", had_previous=True)  # the folder appeared
    assert folder_changed("t1", None, had_previous=True)  # the folder was removed
    assert folder_changed("t1", "t1", had_previous=False)  # no readable previous revision: work


@pytest.mark.parametrize(("code", "ssh", "fpr", "primary", "status"), [
    ("G", False, FPR, FPR, SignatureStatus.GOOD),
    ("U", False, FPR, FPR, SignatureStatus.GOOD),  # imported key, gpg trust undefined: we trust by fpr
    ("G", False, SUB, FPR, SignatureStatus.GOOD),  # signed by a subkey of an allowed primary key
    ("G", False, SUB, SUB, SignatureStatus.UNTRUSTED),
    ("E", False, "", "", SignatureStatus.UNTRUSTED),  # key not in the agent's keyring
    ("B", False, FPR, FPR, SignatureStatus.BAD),
    ("R", False, FPR, FPR, SignatureStatus.BAD),
    ("X", False, FPR, FPR, SignatureStatus.UNTRUSTED),
    ("Y", False, FPR, FPR, SignatureStatus.UNTRUSTED),
    ("N", False, "", "", SignatureStatus.UNSIGNED),
    ("", False, "", "", SignatureStatus.UNSIGNED),
    ("G", True, "SHA256:abc", "", SignatureStatus.GOOD),
    ("U", True, "SHA256:abc", "", SignatureStatus.UNTRUSTED),  # valid, but no principal matched
    ("?", False, "", "", SignatureStatus.UNTRUSTED),
])
def test_signature_verdict(code: str, ssh: bool, fpr: str, primary: str, status: SignatureStatus) -> None:
    v = signature_verdict(code, signer="Alice <a@x>", fingerprint=fpr, primary=primary,
                          allowed_gpg=frozenset({FPR}), ssh=ssh)
    assert v.status is status


def test_refusal_only_when_enforced() -> None:
    assert refusal(SignatureStatus.GOOD, None, enforce=True) is None
    assert refusal(SignatureStatus.UNSIGNED, None, enforce=False) is None
    assert refusal(SignatureStatus.UNSIGNED, None, enforce=True) == "the commit is not signed"
    assert refusal(SignatureStatus.UNTRUSTED, "key X", enforce=True) == \
        "the commit is not signed by an allowed signer: key X"
    assert refusal(SignatureStatus.BAD, None, enforce=True) is not None
    assert refusal(SignatureStatus.NOT_CHECKED, None, enforce=True) is not None


@pytest.mark.parametrize(("url", "path"), [
    ("/srv/git/c.git", Path("/srv/git/c.git")),
    ("./rel/c.git", Path("rel/c.git")),
    ("file:///srv/git/c.git", Path("/srv/git/c.git")),
    ("file://localhost/srv/my%20repo", Path("/srv/my repo")),
    ("git@github.com:org/c.git", None),
    ("ssh://git@host/c.git", None),
    ("https://host/c.git", None),
    ("host:c.git", None),
])
def test_local_repo_path(url: str, path: Path | None) -> None:
    assert local_repo_path(url) == path


def test_redact_url() -> None:
    assert redact_url("https://bot:s3cret@git.example.org/c.git") == "https://***@git.example.org/c.git"
    assert redact_url("git@host:c.git") == "git@host:c.git"


def test_parse_name_status_and_debounce() -> None:
    out = "M\0clusters/a/cib.crm\0A\0clusters/a/x y.txt\0D\0clusters/a/old\0T\0clusters/a/l\0"
    assert parse_name_status(out, "clusters/a") == [
        ChangedFile(path="cib.crm", change="modified"), ChangedFile(path="x y.txt", change="added"),
        ChangedFile(path="old", change="deleted"), ChangedFile(path="l", change="type-changed")]
    assert parse_name_status("M\0cib.crm\0", ".") == [ChangedFile(path="cib.crm", change="modified")]
    assert parse_name_status("", ".") == []
    assert debounce_deadline(first=0.0, last=0.1, quiet=0.25, max_wait=1.0) == 0.35
    assert debounce_deadline(first=0.0, last=0.9, quiet=0.25, max_wait=1.0) == 1.0
