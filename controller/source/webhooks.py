"""Webhook deliveries (pure): is it authentic, is it a push to the followed branch, what to answer.

No sockets, no clock: the HTTP server (controller/service/http.py) hands over the path's provider, the
headers, the body and the secret, and gets back a verdict: trigger a fetch, ignore it, or reject it.

How each forge authenticates a delivery (every comparison is constant-time):
- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; the event in `X-GitHub-Event`
  (`push`, `ping` when the hook is created);
- GitLab: `X-Gitlab-Token: <the secret itself>`; the event in `X-Gitlab-Event` (`Push Hook`);
- Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256(secret, body)>` (no
  prefix; Forgejo sends both, and a present X-Forgejo-Signature is the one checked); the event in
  `X-Gitea-Event` / `X-Forgejo-Event` (`push`);
- generic (any CI or script): `X-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, GitHub's scheme
  under a neutral name. The body may be empty (a plain "look now"), or JSON with a `ref`.

Every push payload of the four carries `ref` ("refs/heads/<branch>"); a push to another branch or a tag
is ignored (200, nothing triggered), so one hook per repository serves agents following any branch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

Action = Literal["trigger", "ignore", "reject"]


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"  # Gitea and Forgejo
    GENERIC = "generic"


class HookVerdict(BaseModel):
    """What to do with one delivery, and the HTTP answer that says so."""

    action: Action
    status: int  # HTTP status: 200 trigger/ignore, 400 malformed, 401 bad signature, 403 off, 413 too big
    message: str
    branch: str | None = None  # the branch the push went to (when it was a push)
    after: str | None = None   # the pushed tip, when the payload names it

    @property
    def body(self) -> bytes:
        return (json.dumps({"action": self.action, "message": self.message}) + "\n").encode()


def hmac_hex(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 a sender puts in its signature header (also used by tests and the forge)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`."""
    return "sha256=" + hmac_hex(secret, body)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _hmac_matches(secret: bytes, body: bytes, given: str | None, *, prefix: str) -> bool:
    if not given:
        return False
    given = given.strip()
    if prefix:
        if not given.lower().startswith(prefix):
            return False
        given = given[len(prefix):]
    return hmac.compare_digest(hmac_hex(secret, body), given.lower().encode("ascii", "replace").decode())


def authentic(provider: Provider, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Whether the delivery carries a valid signature (or token) for `secret`."""
    h = _lower(headers)
    if provider is Provider.GITHUB:
        return _hmac_matches(secret, body, h.get("x-hub-signature-256"), prefix="sha256=")
    if provider is Provider.GITLAB:
        token = h.get("x-gitlab-token")
        return token is not None and hmac.compare_digest(token.encode("utf-8", "replace"), secret)
    if provider is Provider.GITEA:
        sig = h.get("x-forgejo-signature") or h.get("x-gitea-signature")
        return _hmac_matches(secret, body, sig, prefix="")
    return _hmac_matches(secret, body, h.get("x-signature-256"), prefix="sha256=")


def event_name(provider: Provider, headers: Mapping[str, str]) -> str | None:
    """The event the forge says this is, normalised: "push", "ping", ... (None: not said)."""
    h = _lower(headers)
    if provider is Provider.GITHUB:
        return (h.get("x-github-event") or "").strip().lower() or None
    if provider is Provider.GITLAB:
        kind = (h.get("x-gitlab-event") or "").strip().lower()
        names = {"push hook": "push", "tag push hook": "tag_push", "system hook": "system"}
        return names.get(kind, kind or None)
    if provider is Provider.GITEA:
        return (h.get("x-forgejo-event") or h.get("x-gitea-event") or "").strip().lower() or None
    return "push"


def oversized(length: int, max_body: int) -> HookVerdict | None:
    """The answer to a body larger than webhook_max_body (the server refuses it before reading it)."""
    if length <= max_body:
        return None
    return HookVerdict(action="reject", status=413,
                       message=f"body of {length} bytes exceeds webhook_max_body ({max_body})")


def judge(provider: Provider, headers: Mapping[str, str], body: bytes, *, secret: bytes | None,
          branch: str, max_body: int) -> HookVerdict:
    """The verdict on one delivery: authenticity first (nothing of an unsigned body is parsed), then the
    event, then the branch."""
    if secret is None:
        return HookVerdict(action="reject", status=403,
                           message="webhooks are off: set webhook_secret_file (or webhook_secret) in the "
                                   "agent's settings")
    big = oversized(len(body), max_body)
    if big is not None:
        return big
    if not authentic(provider, headers, body, secret):
        return HookVerdict(action="reject", status=401,
                           message=f"bad or missing {provider.value} webhook signature")
    event = event_name(provider, headers)
    if event == "ping":
        return HookVerdict(action="ignore", status=200, message="pong: the webhook reaches this agent")
    if provider is Provider.GENERIC and not body.strip():
        return HookVerdict(action="trigger", status=200, message=f"fetching {branch}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return HookVerdict(action="reject", status=400, message="the body is not JSON")
    if not isinstance(payload, dict):
        return HookVerdict(action="reject", status=400, message="the body is not a JSON object")
    if event != "push":
        return HookVerdict(action="ignore", status=200, message=f"event {event or '(none)'!r} is not a push")
    ref = payload.get("ref")
    if ref is None and provider is Provider.GENERIC:
        return HookVerdict(action="trigger", status=200, message=f"fetching {branch}")
    if not isinstance(ref, str) or not ref:
        return HookVerdict(action="reject", status=400, message="the push event has no \"ref\"")
    after = payload.get("after") if isinstance(payload.get("after"), str) else None
    pushed = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    if pushed != branch:
        return HookVerdict(action="ignore", status=200, branch=pushed, after=after,
                           message=f"push to {ref}, this agent follows refs/heads/{branch}")
    return HookVerdict(action="trigger", status=200, branch=pushed, after=after, message=f"fetching {branch}")
