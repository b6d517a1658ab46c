"""The agent's clone of the desired-state repository: fetch, follow the branch, read the cluster folder.

Layout under cache_dir: git/ (a bare clone: no working tree to get dirty), gnupg/ and allowed_signers
(signatures.py). The followed branch is fetched with a forced refspec into refs/remotes/origin/<branch>
and refs/heads/<branch> is then reset to it: a force-push is followed, nothing is ever merged.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import git
from git.exc import GitError

from controller.command import run
from controller.errors import CommandError, HaGitopsError
from controller.source import decisions
from controller.source.models import ChangedFile, Revision, SignatureStatus, SourceConfig, SyncResult
from controller.source.signatures import Signatures

log = logging.getLogger(__name__)

# Fetch failures that mean our cache is broken (not the remote): re-clone instead of backing off.
_CORRUPT_MARKERS = ("bad object", "loose object", "is corrupt", "unable to unpack", "packfile",
                    "missing blob", "missing tree", "invalid sha1 pointer", "bad tree",
                    "not a git repository", "fatal: bad config", "unable to read",
                    "does not point to a valid object")


class SourceError(HaGitopsError):
    """The repository cannot be fetched or read."""


class CorruptCache(SourceError):
    """The local clone is damaged; it is deleted and cloned again."""


class GitSource:
    """Thin effectful shell around one bare clone. Methods are serialised by a lock: the poller, the push
    watcher and a CLI call may all ask at once."""

    def __init__(self, config: SourceConfig, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.git_dir = config.cache_dir / "git"
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._retry = decisions.RetryState()
        self._last: Revision | None = None
        self._last_error: str | None = None
        self._repo: git.Repo | None = None
        self.fetches = 0  # git fetches made (clones included), and ls-remote checks: what polling costs
        self.checks = 0
        self.signatures: Signatures | None = None
        if config.allowed_signers:
            self.signatures = Signatures(config.cache_dir, config.allowed_signers,
                                         timeout=min(config.git_timeout, 60.0))

    # --- sync --------------------------------------------------------------------------------------

    @property
    def last_good(self) -> Revision | None:
        return self._last

    def sync(self, *, force: bool = False, cheap: bool = False) -> SyncResult:
        """Fetch the branch (unless waiting out a retry backoff; `force` ignores it) and describe the tip.
        `cheap` (a poll): first ask the remote where the branch is (`git ls-remote`, one round trip, no
        objects) and fetch only when it moved. Never raises for a remote or cache problem: that is an
        error in the result, and the last good revision stays the result's revision."""
        with self._lock:
            now = self._clock()
            if not force and not self._retry.due(now):
                return SyncResult(ok=False, revision=self._last, previous_sha=self._sha_or_none(),
                                  error=self._last_error, retry_in=self._retry.retry_in(now), skipped=True)
            if cheap and self._last is not None and self._last_error is None and self.git_dir.exists():
                try:
                    remote = self.remote_tip()
                except SourceError as exc:
                    return self._failed(now, exc, self._last.sha)
                if not decisions.fetch_needed(remote, self._last.sha):
                    last = self._last
                    why = decisions.refusal(last.signature, last.signature_detail,
                                            enforce=self.config.enforce_signatures)
                    return SyncResult(ok=True, revision=last, previous_sha=last.sha, refused=why is not None,
                                      refusal=why, checked=True)
            previous = self._last.sha if self._last else self._local_tip()
            try:
                recloned = self._ensure_cache()
                if not recloned:
                    try:
                        self._fetch(self.git_dir)
                        tip = self._remote_tip()
                        self._check_objects(tip)
                    except CorruptCache as exc:
                        log.warning("git cache %s is corrupt (%s): cloning again", self.git_dir, exc)
                        self._reclone()
                        recloned = True
                tip = self._remote_tip()
                self._git("update-ref", f"refs/heads/{self.config.branch}", tip)
            except (SourceError, CommandError, GitError, OSError) as exc:
                return self._failed(now, exc, previous)
            self._retry = decisions.RetryState()
            self._last_error = None
            had_previous = previous is not None and self._has_commit(previous)
            revision = self.revision(tip, since=previous if had_previous else None)
            changed = decisions.folder_changed(
                self.folder_tree(previous) if had_previous and previous else None, revision.folder_tree,
                had_previous=had_previous)
            forced = bool(previous and previous != tip
                          and (not had_previous or not self.is_ancestor(previous, tip)))
            why = decisions.refusal(revision.signature, revision.signature_detail,
                                    enforce=self.config.enforce_signatures)
            self._last = revision
            return SyncResult(ok=True, revision=revision, previous_sha=previous, moved=previous != tip,
                              forced=forced, folder_changed=changed, refused=why is not None, refusal=why,
                              recloned=recloned)

    def _failed(self, now: float, exc: BaseException, previous: str | None) -> SyncResult:
        self._retry = self._retry.failed(now, self.config.retry_initial, self.config.retry_max,
                                         self._rng.random())
        self._last_error = _message(exc)
        log.warning("fetching %s failed (%d in a row, next try in %.1fs): %s",
                    decisions.redact_url(self.config.repo_url), self._retry.failures,
                    self._retry.retry_in(now) or 0.0, self._last_error)
        return SyncResult(ok=False, revision=self._last, previous_sha=previous, error=self._last_error,
                          retry_in=self._retry.retry_in(now))

    def _sha_or_none(self) -> str | None:
        return self._last.sha if self._last else None

    # --- the cache ---------------------------------------------------------------------------------

    def _ensure_cache(self) -> bool:
        """Make sure git_dir is a sound clone; returns True when it had to be cloned (fetch included)."""
        if not self.git_dir.exists():
            self._reclone()
            return True
        try:
            repo = self._open()
            if not repo.bare:
                raise CorruptCache("not a bare repository")
            if self._git("config", "--get", "remote.origin.url", check=False).strip() != self.config.repo_url:
                self._git("config", "remote.origin.url", self.config.repo_url)
            tip = self._local_tip()
            if tip is not None:
                self._check_objects(tip)
            elif self._git("rev-parse", "--verify", "-q", f"refs/heads/{self.config.branch}",
                           check=False).strip():
                raise CorruptCache(f"refs/heads/{self.config.branch} points to a missing commit")
        except (CorruptCache, GitError, CommandError, ValueError, OSError) as exc:
            log.warning("git cache %s is unusable (%s): cloning again", self.git_dir, _message(exc))
            self._reclone()
            return True
        return False

    def _reclone(self) -> None:
        """Clone into a temporary sibling, then swap: a failed clone leaves the old cache in place."""
        self.close()
        self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".git-clone-", dir=self.config.cache_dir))
        try:
            run(["git", "init", "-q", "--bare", str(tmp)], timeout=30)
            for key, value in (("remote.origin.url", self.config.repo_url), ("gc.autoDetach", "false"),
                               ("core.logAllRefUpdates", "true")):
                run(["git", "--git-dir", str(tmp), "config", key, value], timeout=30)
            self._fetch(tmp)
            trash = self.config.cache_dir / f".git-old-{os.getpid()}-{time.time_ns()}"
            if self.git_dir.exists() or self.git_dir.is_symlink():
                self.git_dir.rename(trash)
            tmp.rename(self.git_dir)
            shutil.rmtree(trash, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remote_tip(self) -> str | None:
        """Where the followed branch is on the remote (`git ls-remote`: refs only, no objects), or None
        when the remote has no such branch."""
        self.checks += 1
        ref = f"refs/heads/{self.config.branch}"
        try:
            out = run(["git", "ls-remote", "--quiet", "--", self.config.repo_url, ref],
                      timeout=self.config.git_timeout, env=self._git_env()).stdout
        except CommandError as exc:
            raise SourceError(f"cannot check {self._url()}: {exc.stderr.strip() or exc}") from exc
        return decisions.parse_ls_remote(out, ref)

    def _fetch(self, git_dir: Path) -> None:
        branch = self.config.branch
        self.fetches += 1
        # gitpython's long-lived cat-file process does not see packs fetched after it started.
        self.close()
        try:
            run(["git", "--git-dir", str(git_dir), "fetch", "--quiet", "--prune", "--no-tags",
                 "--no-write-fetch-head", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"],
                timeout=self.config.git_timeout, env=self._git_env())
        except CommandError as exc:
            err = exc.stderr.lower()
            if "couldn't find remote ref" in err:
                raise SourceError(f"branch {branch!r} does not exist in {self._url()}") from exc
            # The remote's problems first: a refused key or a 401 is no reason to throw the cache away
            # (and "unable to read askpass response" is not an unreadable object).
            remote = decisions.transport_error(exc.stderr)
            if remote is not None:
                raise SourceError(f"cannot fetch {self._url()}: {remote}") from exc
            if git_dir == self.git_dir and any(m in err for m in _CORRUPT_MARKERS) and "remote" not in err:
                raise CorruptCache(exc.stderr.strip()) from exc
            raise SourceError(f"cannot fetch {self._url()}: {_one_line(exc.stderr) or exc}") from exc

    def _git_env(self) -> dict[str, str]:
        ssh = self.config.git_ssh_command or os.environ.get("GIT_SSH_COMMAND") or "ssh"
        # Never wait for a password or a host-key question: a daemon has nobody to answer.
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": f"{ssh} -o BatchMode=yes",
               "GIT_ASKPASS": "/bin/false", "LC_ALL": "C"}
        pairs: list[tuple[str, str]] = []
        if self.config.git_ca_file is not None:
            pairs.append(("http.sslCAInfo", str(self.config.git_ca_file)))
            env["GIT_SSL_CAINFO"] = str(self.config.git_ca_file)  # an inherited one would beat the config
        if self.config.git_token_file is not None:
            # Read at every fetch (a rotated token is used at once); sent as a header from the environment,
            # so it is on no argv, in no URL and in no config file.
            pairs.append(("http.extraHeader",
                          decisions.basic_auth_header(decisions.https_user(self.config.repo_url),
                                                      self._token())))
        return {**env, **decisions.git_config_env(pairs)} if pairs else env

    def _token(self) -> str:
        path = self.config.git_token_file
        assert path is not None
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read git_token_file {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
        if not token or "\n" in token:
            raise SourceError(f"git_token_file {path} must hold one token on one line")
        return token

    def _check_objects(self, sha: str) -> None:
        """fsck-lite: the commit, the cluster folder's trees and its blobs are all readable."""
        try:
            self._git("cat-file", "-e", f"{sha}^{{commit}}")
            listing = self._git("ls-tree", "-r", "-z", sha, "--", self.config.path)
            ids = [e.split(None, 3)[2] for e in listing.split("\0") if e]
            if ids:
                out = run(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch-check"],
                          input="".join(i + "\n" for i in ids), timeout=self.config.git_timeout).stdout
                if "missing" in out or len(out.splitlines()) != len(ids):
                    raise CorruptCache(f"objects of {self.config.path} at {sha[:12]} are missing")
        except CommandError as exc:
            raise CorruptCache(exc.stderr.strip() or str(exc)) from exc

    def _open(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.git_dir)
        return self._repo

    def close(self) -> None:
        """Stop gitpython's persistent cat-file processes."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _git(self, *args: str, check: bool = True) -> str:
        return run(["git", "--git-dir", str(self.git_dir), *args], timeout=self.config.git_timeout,
                   check=check).stdout

    def _url(self) -> str:
        return decisions.redact_url(self.config.repo_url)

    def _local_tip(self) -> str | None:
        if not self.git_dir.exists():
            return None
        out = self._git("rev-parse", "--verify", "-q", f"refs/heads/{self.config.branch}^{{commit}}",
                        check=False).strip()
        return out or None

    def _remote_tip(self) -> str:
        ref = f"refs/remotes/origin/{self.config.branch}"
        out = self._git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False).strip()
        if not out:
            raise CorruptCache(f"{ref} is missing after the fetch")
        return out

    def _has_commit(self, sha: str) -> bool:
        return run(["git", "--git-dir", str(self.git_dir), "cat-file", "-e", f"{sha}^{{commit}}"],
                   timeout=self.config.git_timeout, check=False).returncode == 0

    # --- reading revisions -------------------------------------------------------------------------

    def revision(self, sha: str, *, since: str | None = None) -> Revision:
        """The commit `sha` with its signature verdict and, given `since`, the folder's changed files."""
        with self._lock:
            c = self._open().commit(sha)
            sig = SignatureStatus.NOT_CHECKED
            signer = detail = None
            if self.signatures is not None:
                verdict = self.signatures.verify(self.git_dir, c.hexsha)
                sig, signer, detail = verdict.status, verdict.signer, verdict.detail
            changed = self.changed_files(since, c.hexsha) if since and self._has_commit(since) else None
            message = c.message if isinstance(c.message, str) else c.message.decode(errors="replace")
            return Revision(sha=c.hexsha, author=f"{c.author.name} <{c.author.email}>",
                            committer=f"{c.committer.name} <{c.committer.email}>",
                            committed_at=c.committed_datetime, message=message,
                            folder_tree=self.folder_tree(c.hexsha), signature=sig, signer=signer,
                            signature_detail=detail, previous_sha=since if changed is not None else None,
                            changed_files=changed)

    def folder_tree(self, sha: str) -> str | None:
        """The tree id of the cluster folder at `sha`; None when the folder does not exist there."""
        with self._lock:
            tree = self._open().commit(sha).tree
            if self.config.path == ".":
                return tree.hexsha
            try:
                sub = tree / self.config.path
            except KeyError:
                return None
            return sub.hexsha if sub.type == "tree" else None

    def folder_changed(self, old: str | None, new: str) -> bool:
        """Whether the cluster folder differs between two commits (always True without `old`, or when
        `old` is no longer in the repository, e.g. after a force-push and a re-clone)."""
        with self._lock:
            had = old is not None and self._has_commit(old)
            return decisions.folder_changed(self.folder_tree(old) if had and old else None,
                                            self.folder_tree(new), had_previous=had)

    def changed_files(self, old: str, new: str) -> list[ChangedFile]:
        """Files of the cluster folder that differ between two commits (renames as delete + add)."""
        with self._lock:
            out = self._git("diff", "--name-status", "-z", "--no-renames", old, new, "--", self.config.path)
            return decisions.parse_name_status(out, self.config.path)

    def is_ancestor(self, old: str, new: str) -> bool:
        res = run(["git", "--git-dir", str(self.git_dir), "merge-base", "--is-ancestor", old, new],
                  timeout=self.config.git_timeout, ok_codes=(0, 1))
        return res.returncode == 0

    def resolve(self, rev: str) -> str | None:
        """The commit `rev` names in the clone (a sha, the branch, `main~1`; HEAD is the branch), or None."""
        if rev.startswith("-"):
            return None  # never an option to git
        if rev == "HEAD" or rev.startswith(("HEAD~", "HEAD^")):
            # The clone's HEAD is not the followed branch: HEAD means the branch's tip here.
            rev = f"refs/heads/{self.config.branch}{rev[4:]}"
        with self._lock:
            out = self._git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip()
        return out or None

    def read_folder(self, sha: str) -> dict[str, bytes]:
        """The cluster folder's files at `sha` (any commit still in the repository): path -> content."""
        with self._lock:
            return {rel: data for rel, _mode, data in self._blobs(sha)}

    def export(self, sha: str, dest: Path) -> Path:
        """Write the cluster folder at `sha` to `dest` (which must not exist), so the desired-state loader
        can read it from disk. Written to a temporary sibling and renamed: never seen half-written."""
        with self._lock:
            if dest.exists():
                raise SourceError(f"export destination {dest} already exists")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                for rel, mode, data in self._blobs(sha):
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    target.chmod(0o755 if mode & stat.S_IXUSR else 0o644)
                tmp.rename(dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return dest

    def _blobs(self, sha: str) -> list[tuple[str, int, bytes]]:
        commit = self._open().commit(sha)
        tree = commit.tree
        if self.config.path != ".":
            try:
                tree = tree / self.config.path
            except KeyError as exc:
                raise SourceError(f"{self.config.path!r} does not exist at {sha[:12]}") from exc
            if tree.type != "tree":
                raise SourceError(f"{self.config.path!r} is not a folder at {sha[:12]}")
        out: list[tuple[str, int, bytes]] = []
        for item in tree.traverse():
            if not isinstance(item, git.objects.IndexObject):  # traverse() without as_edge: never
                raise SourceError(f"unexpected tree entry {item!r} at {sha[:12]}")
            rel = decisions.relative_to_folder(os.fspath(item.path), self.config.path)
            if isinstance(item, git.Tree):
                continue
            if not isinstance(item, git.Blob) or stat.S_ISLNK(item.mode):
                # A symlink could point anywhere on the node; a submodule is another repository.
                raise SourceError(f"{rel} at {sha[:12]}: symlinks and submodules are not allowed in the "
                                  "cluster folder")
            out.append((rel, item.mode, item.data_stream.read()))
        return out

    def keep(self, sha: str) -> None:
        """Pin a commit (e.g. the applied one) so it survives gc after a force-push: rollback needs it."""
        with self._lock:
            self._git("update-ref", f"refs/ha-gitops/keep/{sha}", sha)


def _one_line(stderr: str) -> str:
    """git's stderr on one line (the error reaches status and the audit trail as one line)."""
    return " | ".join(ln.strip() for ln in stderr.splitlines() if ln.strip())[:500]


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
