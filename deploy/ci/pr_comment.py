#!/usr/bin/env python3
"""Create or update ONE comment on a GitHub pull request or a GitLab merge request (stdlib only).

The comment is the one whose body carries MARKER; a second run edits it instead of adding another.

  pr_comment.py --forge github --body FILE    # GITHUB_TOKEN, GITHUB_REPOSITORY, PR number from
                                              # --number or GITHUB_EVENT_PATH; GITHUB_API_URL
  pr_comment.py --forge gitlab --body FILE    # GITLAB_TOKEN (api scope), CI_API_V4_URL, CI_PROJECT_ID,
                                              # CI_MERGE_REQUEST_IID

GitHub: REST issue comments (GET .../issues/N/comments, PATCH .../issues/comments/ID, POST). GitLab: merge
request notes (GET/PUT/POST /projects/ID/merge_requests/IID/notes). Exit 0 posted, 2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- ha-gitops-plan -->"
PER_PAGE = 100
TIMEOUT = 30


class ForgeError(Exception):
    pass


def _call(method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Accept": "application/json", "User-Agent": "ha-gitops-pr-comment", **headers,
        **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ForgeError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise ForgeError(f"{method} {url}: {exc.reason}") from exc
    return json.loads(raw) if raw else None


class Forge:
    """Where a review's comments live: list them (every page), edit one, add one."""

    def __init__(self, kind: str, api: str, project: str, number: int, token: str) -> None:
        self.kind, self.api, self.number = kind, api.rstrip("/"), number
        if kind == "github":
            self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                            "X-GitHub-Api-Version": "2022-11-28"}
            self.base = f"{self.api}/repos/{project}/issues"
        elif kind == "gitlab":
            self.headers = {"PRIVATE-TOKEN": token}
            self.base = f"{self.api}/projects/{urllib.parse.quote(project, safe='')}/merge_requests"
        else:
            raise ForgeError(f"unknown forge {kind!r} (github or gitlab)")

    def _thread(self) -> str:
        return f"{self.base}/{self.number}/" + ("comments" if self.kind == "github" else "notes")

    def comments(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = _call("GET", f"{self._thread()}?per_page={PER_PAGE}&page={page}", self.headers)
            if not isinstance(batch, list):
                raise ForgeError(f"listing comments: not a list: {str(batch)[:200]}")
            found += batch
            if len(batch) < PER_PAGE:
                return found
            page += 1

    def update(self, comment_id: int, body: str) -> dict[str, Any]:
        if self.kind == "github":
            return dict(_call("PATCH", f"{self.base}/comments/{comment_id}", self.headers, {"body": body}))
        return dict(_call("PUT", f"{self._thread()}/{comment_id}", self.headers, {"body": body}))

    def create(self, body: str) -> dict[str, Any]:
        return dict(_call("POST", self._thread(), self.headers, {"body": body}))


def upsert(forge: Forge, text: str, marker: str = MARKER) -> tuple[str, int]:
    """("updated" | "created", comment id): the marked comment now holds `text`."""
    body = text if marker in text else f"{marker}\n{text}"
    mine = [c for c in forge.comments() if marker in str(c.get("body") or "")]
    if mine:
        return "updated", int(forge.update(int(mine[0]["id"]), body)["id"])
    return "created", int(forge.create(body)["id"])


def _github_number(env: dict[str, str]) -> int:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        raise ForgeError("no pull request number: pass --number or run in a pull_request workflow")
    with open(path) as f:
        event = json.load(f)
    number = (event.get("pull_request") or {}).get("number") or event.get("number")
    if not number:
        raise ForgeError(f"{path} is not a pull_request event")
    return int(number)


def forge_from_env(kind: str, number: int | None, env: dict[str, str]) -> Forge:
    def need(name: str) -> str:
        value = env.get(name)
        if not value:
            raise ForgeError(f"{name} is not set")
        return value

    if kind == "github":
        api = env.get("GITHUB_API_URL") or "https://api.github.com"
        return Forge("github", api, need("GITHUB_REPOSITORY"), number or _github_number(env),
                     need("GITHUB_TOKEN"))
    return Forge("gitlab", need("CI_API_V4_URL"), need("CI_PROJECT_ID"),
                 number or int(need("CI_MERGE_REQUEST_IID")), need("GITLAB_TOKEN"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forge", choices=["github", "gitlab"], required=True)
    ap.add_argument("--body", required=True, help="file with the comment's markdown ('-': stdin)")
    ap.add_argument("--number", type=int, default=None, help="the pull/merge request number (IID)")
    ap.add_argument("--marker", default=MARKER)
    args = ap.parse_args(argv)
    try:
        text = sys.stdin.read() if args.body == "-" else Path(args.body).read_text()
        action, cid = upsert(forge_from_env(args.forge, args.number, dict(os.environ)), text, args.marker)
    except (ForgeError, OSError, ValueError) as exc:
        print(f"pr_comment: {exc}", file=sys.stderr)
        return 2
    print(f"pr_comment: {action} comment {cid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
