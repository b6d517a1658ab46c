"""Webhook deliveries as each forge sends them: authentic or not, a push to the followed branch or not."""

from __future__ import annotations

import json

import pytest

from controller.source.webhooks import Provider, github_signature, hmac_hex, judge

SECRET = b"s3cret-shared-with-the-forge"
SHA = "a" * 40


def push(ref: str = "refs/heads/main", **extra: object) -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": SHA,
                       "repository": {"full_name": "ops/cluster"}, **extra}).encode()


def verdict(provider: Provider, headers: dict[str, str], body: bytes, *, secret: bytes | None = SECRET,
            max_body: int = 1 << 20) -> tuple[str, int]:
    v = judge(provider, headers, body, secret=secret, branch="main", max_body=max_body)
    return v.action, v.status


def github(body: bytes, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": github_signature(secret, body),
            "Content-Type": "application/json"}


def test_github_push_to_the_followed_branch_triggers() -> None:
    body = push()
    v = judge(Provider.GITHUB, github(body), body, secret=SECRET, branch="main", max_body=1 << 20)
    assert (v.action, v.status, v.branch, v.after) == ("trigger", 200, "main", SHA)


def test_github_signature_header_names_are_case_insensitive() -> None:
    body = push()
    headers = {k.lower(): v for k, v in github(body).items()}
    headers["x-hub-signature-256"] = headers["x-hub-signature-256"].upper().replace("SHA256=", "sha256=")
    assert verdict(Provider.GITHUB, headers, body) == ("trigger", 200)


@pytest.mark.parametrize("headers", [
    {"X-GitHub-Event": "push"},                                             # unsigned
    {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},  # wrong
    {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha1=" + "0" * 40},    # the legacy scheme
])
def test_github_bad_or_missing_signature_is_401(headers: dict[str, str]) -> None:
    assert verdict(Provider.GITHUB, headers, push()) == ("reject", 401)


def test_a_body_changed_after_signing_is_401() -> None:
    body = push()
    assert verdict(Provider.GITHUB, github(body), push("refs/heads/other")) == ("reject", 401)


def test_another_secret_is_401() -> None:
    body = push()
    assert verdict(Provider.GITHUB, github(body, secret=b"another"), body) == ("reject", 401)


def test_github_ping_is_answered_and_triggers_nothing() -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    assert verdict(Provider.GITHUB, github(body, "ping"), body) == ("ignore", 200)


def test_other_branches_tags_and_events_are_ignored() -> None:
    for body, event in ((push("refs/heads/feature"), "push"), (push("refs/tags/v1"), "push"),
                        (json.dumps({"action": "opened"}).encode(), "pull_request")):
        assert verdict(Provider.GITHUB, github(body, event), body) == ("ignore", 200)


def test_malformed_signed_bodies_are_400() -> None:
    for body in (b"not json", b"[1, 2]", json.dumps({"before": "x"}).encode()):
        assert verdict(Provider.GITHUB, github(body), body) == ("reject", 400)


def test_too_big_is_413_before_anything_else() -> None:
    body = push(padding="x" * 2048)
    assert verdict(Provider.GITHUB, github(body), body, max_body=1024) == ("reject", 413)
    assert verdict(Provider.GITHUB, {}, body, max_body=1024) == ("reject", 413)


def test_without_a_secret_webhooks_are_off() -> None:
    body = push()
    assert verdict(Provider.GITHUB, github(body), body, secret=None) == ("reject", 403)


def test_gitlab_token_is_the_secret_itself() -> None:
    body = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": SHA}).encode()
    ok = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}
    assert verdict(Provider.GITLAB, ok, body) == ("trigger", 200)
    assert verdict(Provider.GITLAB, {**ok, "X-Gitlab-Token": "guess"}, body) == ("reject", 401)
    assert verdict(Provider.GITLAB, {"X-Gitlab-Event": "Push Hook"}, body) == ("reject", 401)
    tag = json.dumps({"object_kind": "tag_push", "ref": "refs/tags/v1"}).encode()
    assert verdict(Provider.GITLAB, {**ok, "X-Gitlab-Event": "Tag Push Hook"}, tag) == ("ignore", 200)


def test_gitea_and_forgejo_sign_with_a_bare_hex_hmac() -> None:
    body = push()
    sig = hmac_hex(SECRET, body)
    assert verdict(Provider.GITEA, {"X-Gitea-Event": "push", "X-Gitea-Signature": sig}, body) \
        == ("trigger", 200)
    assert verdict(Provider.GITEA, {"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig,
                                    "X-Gitea-Signature": sig}, body) == ("trigger", 200)
    # "sha256=" is GitHub's prefix, not Gitea's.
    assert verdict(Provider.GITEA, {"X-Gitea-Event": "push", "X-Gitea-Signature": "sha256=" + sig}, body) \
        == ("reject", 401)


def test_a_bad_forgejo_signature_is_not_rescued_by_a_good_gitea_one() -> None:
    body = push()
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": "0" * 64,
               "X-Gitea-Signature": hmac_hex(SECRET, body)}
    assert verdict(Provider.GITEA, headers, body) == ("reject", 401)


def test_generic_hook_empty_body_or_ref() -> None:
    sig = {"X-Signature-256": github_signature(SECRET, b"")}
    assert verdict(Provider.GENERIC, sig, b"") == ("trigger", 200)
    body = json.dumps({"ref": "refs/heads/other"}).encode()
    assert verdict(Provider.GENERIC, {"X-Signature-256": github_signature(SECRET, body)}, body) \
        == ("ignore", 200)
    body = json.dumps({"note": "deploy"}).encode()
    assert verdict(Provider.GENERIC, {"X-Signature-256": github_signature(SECRET, body)}, body) \
        == ("trigger", 200)
    assert verdict(Provider.GENERIC, {"X-Hub-Signature-256": github_signature(SECRET, b"")}, b"") \
        == ("reject", 401)
