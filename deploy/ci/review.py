#!/usr/bin/env python3
"""The review of a pull request, as CI runs it (GitHub Actions and GitLab CI run exactly this script).

  review.py --dir desired/kamailio [--base origin/main] [--snapshot cluster.snapshot] [--no-preview]
            [--identity AGE_KEY]
            [--out review.md] [--forge github|gitlab [--number N]] [--ha-gitops CMD]

Steps: `ha-gitops validate DIR`; with --snapshot, `ha-gitops plan --live SNAPSHOT --dir DIR` (the plan
against the production cluster's state, off the cluster); unless --no-preview (or the folder is invalid),
`ha-gitops preview --base BASE --head DIR` (root: a real sandbox copy). One markdown comment of all three,
written to --out and, with --forge, posted or updated on the pull request (pr_comment.py).
Exit 0: every step passed (changes are fine), 2: a step failed to run or the folder is invalid, 3: the
plan or the preview says the change would be refused, rolled back or leave the cluster unhealthy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pr_comment import MARKER, ForgeError, forge_from_env, upsert

STEP_TIMEOUT = 1800  # a preview brings a cluster up: well under a minute on a 2-core runner


def _run(cmd: list[str]) -> tuple[int, str, str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 2, "", f"{shlex.join(cmd)}: {exc}"
    return r.returncode, r.stdout, r.stderr


def _block(text: str) -> str:
    return "```\n" + text.rstrip().replace("```", "'''") + "\n```"


def review(args: argparse.Namespace) -> tuple[int, str]:
    """(exit code, the comment's markdown)."""
    tool = shlex.split(args.ha_gitops)
    codes: list[int] = []
    parts = [MARKER, f"## ha-gitops review of `{args.dir}`", ""]

    code, out, err = _run([*tool, "validate", args.dir])
    codes.append(2 if code else 0)
    parts += [f"### validate: {'valid' if code == 0 else 'INVALID' if code == 2 else f'exit {code}'}", "",
              _block(out + err), ""]
    if args.snapshot:
        code, out, err = _run([*tool, "plan", "--live", args.snapshot, "--dir", args.dir, "--format",
                               "markdown"])
        codes.append(code if code in (2, 3) else 0)
        parts += [f"### plan against `{args.snapshot}` (exit {code})", "", out.rstrip() or _block(err), ""]
    if args.no_preview:
        parts += ["### preview: not run (--no-preview)", ""]
    elif codes[0]:
        parts += ["### preview: not run (the folder is invalid)", ""]
    else:
        cmd = [*tool, "preview", "--base", args.base, "--head", args.dir, "--format", "markdown"]
        if args.identity:  # real secret values in the preview (else placeholders)
            cmd += ["--identity", args.identity]
        code, out, err = _run(cmd)
        codes.append(code if code in (2, 3) else 0)
        parts += [out.rstrip() if out.strip() else f"### preview failed (exit {code})\n\n{_block(err)}", ""]
    worst = 2 if 2 in codes else 3 if 3 in codes else 0
    return worst, "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="the cluster folder of the pull request's head")
    ap.add_argument("--base", default="origin/main", help="what the preview starts from: REV or DIR")
    ap.add_argument("--snapshot", default=None, help="`ha-gitops snapshot` of the production cluster")
    ap.add_argument("--no-preview", action="store_true")
    ap.add_argument("--identity", default=os.environ.get("HA_GITOPS_PREVIEW_IDENTITY") or None,
                    help="an age identity for the preview's secrets [env HA_GITOPS_PREVIEW_IDENTITY]")
    ap.add_argument("--out", default="ha-gitops-review.md")
    ap.add_argument("--forge", choices=["github", "gitlab"], default=None)
    ap.add_argument("--number", type=int, default=None)
    ap.add_argument("--ha-gitops", default=os.environ.get("HA_GITOPS", "ha-gitops"),
                    help="how to run ha-gitops [env HA_GITOPS]")
    args = ap.parse_args(argv)
    code, text = review(args)
    Path(args.out).write_text(text)
    print(text)
    if args.forge:
        try:
            action, cid = upsert(forge_from_env(args.forge, args.number, dict(os.environ)), text)
        except ForgeError as exc:
            print(f"review: posting the comment failed: {exc}", file=sys.stderr)
            return 2
        print(f"review: {action} comment {cid}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
