"""Pure decisions of the source: no git, no clock, no threads. The effects live in git.py and watch.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from controller.source.models import ChangedFile, SignatureStatus

JITTER = 0.2


# --- retry backoff -------------------------------------------------------------------------------------

def backoff_delay(failures: int, initial: float, cap: float, rnd: float, jitter: float = JITTER) -> float:
    """Seconds to wait after `failures` consecutive failures (>= 1): initial * 2^(n-1), capped, minus up
    to `jitter` of it (rnd in [0, 1)) so agents that failed together do not retry together."""
    if failures < 1:
        return 0.0
    base = min(cap, initial * 2.0 ** min(failures - 1, 62))
    return base * (1.0 - jitter * rnd)


@dataclass(frozen=True)
class RetryState:
    failures: int = 0
    next_attempt: float | None = None  # monotonic seconds; None: no failure pending

    def due(self, now: float) -> bool:
        return self.next_attempt is None or now >= self.next_attempt

    def failed(self, now: float, initial: float, cap: float, rnd: float) -> RetryState:
        n = self.failures + 1
        return RetryState(n, now + backoff_delay(n, initial, cap, rnd))

    def retry_in(self, now: float) -> float | None:
        return None if self.next_attempt is None else max(0.0, self.next_attempt - now)


# --- "does this concern us" ----------------------------------------------------------------------------

def folder_changed(previous_tree: str | None, new_tree: str | None, *, had_previous: bool) -> bool:
    """Work is needed when the cluster folder's tree id differs (exact: same id, same content). The first
    revision ever seen is always work; so is a previous revision we can no longer read (had_previous
    False)."""
    if not had_previous:
        return True
    return previous_tree != new_tree


def parse_name_status(output: str, folder: str) -> list[ChangedFile]:
    """`git diff --name-status -z --no-renames A B -- folder` -> files relative to the folder."""
    kinds = {"A": "added", "M": "modified", "D": "deleted", "T": "type-changed"}
    fields = output.split("\0")
    out: list[ChangedFile] = []
    for i in range(0, len(fields) - 1, 2):
        status, path = fields[i].strip(), fields[i + 1]
        if not status:
            continue
        change = kinds.get(status[0], "modified")
        out.append(ChangedFile(path=relative_to_folder(path, folder), change=change))  # type: ignore[arg-type]
    return out


def relative_to_folder(path: str, folder: str) -> str:
    if folder == ".":
        return path
    return str(PurePosixPath(path).relative_to(folder))


# --- remotes -------------------------------------------------------------------------------------------

def local_repo_path(url: str) -> Path | None:
    """The filesystem path of a local remote (plain path or file:// URL), else None (ssh, https...).
    Git's own rule: '://' means a URL; a ':' before the first '/' means scp-like ssh."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" and parts.netloc in ("", "localhost"):
            return Path(unquote(parts.path))
        return None
    colon, slash = url.find(":"), url.find("/")
    if colon != -1 and (slash == -1 or colon < slash):
        return None
    return Path(url)


def parse_ls_remote(output: str, ref: str) -> str | None:
    """The sha `git ls-remote URL REF` prints for exactly `ref` ("<sha>\\t<ref>" lines), or None."""
    for line in output.splitlines():
        sha, _, name = line.strip().partition("\t")
        if name == ref and re.fullmatch(r"[0-9a-f]{40}(?:[0-9a-f]{24})?", sha):
            return sha
    return None


def fetch_needed(remote_tip: str | None, local_tip: str | None) -> bool:
    """A poll fetches only when the remote's branch is not where our copy is. A branch the remote no longer
    has is fetched too: the fetch names the problem (and keeps the last good revision)."""
    return remote_tip is None or local_tip is None or remote_tip != local_tip


def redact_url(url: str) -> str:
    """A URL fit for logs and audit: https://user:token@host -> https://***@host. An ssh URL's user
    (ssh://git@host/...) is a login name, never a secret: it stays, so the message names the account."""
    m = re.match(r"^([a-z][a-z0-9+.-]*://)([^/@]*)@", url, flags=re.I)
    if m is None:
        return url
    if m[1].lower() in ("ssh://", "git+ssh://", "ssh+git://") and ":" not in m[2]:
        return url
    return m[1] + "***@" + url[m.end():]


# --- transports (ssh, https) -----------------------------------------------------------------------------

DEFAULT_HTTPS_USER = "git"


def https_user(url: str) -> str:
    """The user name an https token is sent with: the URL's own (https://bot@host/...), else "git" (forges
    that authenticate by token ignore the name or accept any)."""
    m = re.match(r"^https?://([^/@:]+)(?::[^/@]*)?@", url, flags=re.I)
    return unquote(m[1]) if m else DEFAULT_HTTPS_USER


def basic_auth_header(user: str, token: str) -> str:
    import base64

    return "Authorization: Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


def git_config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """git configuration through the environment (GIT_CONFIG_COUNT/KEY_n/VALUE_n, git >= 2.31): never on
    argv (any local user reads argv in /proc) and never written to the clone's config."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


# What git, ssh and curl print when the remote (not our cache) is the problem: the first match names it.
# Order matters: ssh prints "Could not read from remote repository" after each of its own reasons.
_TRANSPORT_ERRORS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("identity file",), "the deploy key file cannot be read (the -i file of git_ssh_command)"),
    (("permission denied (publickey", "permission denied, please try again"),
     "permission denied (publickey): the server refused the deploy key"),
    (("host key verification failed", "remote host identification has changed"),
     "host key verification failed: the server's host key is not the pinned one (known_hosts)"),
    (("returned error: 401", "authentication failed for", "could not read username",
      "could not read password"), "HTTP 401: authentication refused (the token of git_token_file)"),
    (("returned error: 403",), "HTTP 403: access forbidden to this token"),
    (("returned error: 404", "repository not found", "does not appear to be a git repository"),
     "no repository at this URL"),
    (("server certificate verification failed", "ssl certificate problem", "certificate verify failed"),
     "TLS certificate verification failed (is git_ca_file the CA that signed the server's certificate?)"),
    (("connection refused", "couldn't connect to server"), "connection refused: the server is down or not "
                                                           "listening"),
    (("connection timed out", "operation timed out", "timed out after"), "connection timed out"),
    (("no route to host", "network is unreachable"), "the server is unreachable (no route)"),
    (("could not resolve host", "could not resolve hostname", "name or service not known"),
     "the server's host name does not resolve"),
    (("connection closed by", "connection reset", "early eof", "the remote end hung up"),
     "the server closed the connection"),
)


def transport_error(stderr: str) -> str | None:
    """A fetch's stderr -> "REASON [the line of git's output that says so]", or None when it names no
    problem of the remote or of the way to it (then it may be our cache's)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for markers, reason in _TRANSPORT_ERRORS:
        for line in lines:
            if any(m in line.lower() for m in markers):
                return f"{reason} [{line[:200]}]"
    return None


# --- signatures ----------------------------------------------------------------------------------------

def normalise_fingerprint(fpr: str) -> str:
    return fpr.replace(" ", "").upper().removeprefix("0X")


@dataclass(frozen=True)
class SignatureVerdict:
    status: SignatureStatus
    signer: str | None
    detail: str | None


def signature_verdict(code: str, *, signer: str, fingerprint: str, primary: str,
                      allowed_gpg: frozenset[str], ssh: bool) -> SignatureVerdict:
    """Map git's %G? (with %GS/%GF/%GP) to our status. For GPG the agent decides trust by fingerprint,
    not by the keyring's trust database; for SSH git already matched the key against the allowed-signers
    file the agent wrote (G: matched, U: valid signature by a key not in it)."""
    code = (code or "N").strip()[:1]
    who = signer or None
    fpr = normalise_fingerprint(fingerprint) if fingerprint and not ssh else fingerprint
    if code == "N":
        return SignatureVerdict(SignatureStatus.UNSIGNED, None, None)
    if code == "B":
        return SignatureVerdict(SignatureStatus.BAD, who, "the signature does not match the commit")
    if code == "R":
        return SignatureVerdict(SignatureStatus.BAD, who, f"signed with a revoked key {fpr}")
    if code in ("X", "Y"):
        what = "an expired signature" if code == "X" else "an expired key"
        return SignatureVerdict(SignatureStatus.UNTRUSTED, who, f"{what} {fpr}")
    if code == "E":
        return SignatureVerdict(SignatureStatus.UNTRUSTED, None,
                                "the signing key is not an allowed signer (unknown key)")
    if code in ("G", "U"):
        if ssh:
            if code == "G":
                return SignatureVerdict(SignatureStatus.GOOD, who, fpr)
            return SignatureVerdict(SignatureStatus.UNTRUSTED, None,
                                    f"SSH key {fpr} is not an allowed signer")
        keys = {normalise_fingerprint(primary), fpr} - {""}
        if keys & allowed_gpg:
            return SignatureVerdict(SignatureStatus.GOOD, who, normalise_fingerprint(primary) or fpr)
        return SignatureVerdict(SignatureStatus.UNTRUSTED, who, f"GPG key {fpr} is not an allowed signer")
    return SignatureVerdict(SignatureStatus.UNTRUSTED, who, f"unexpected verification result {code!r}")


def refusal(status: SignatureStatus, detail: str | None, *, enforce: bool) -> str | None:
    """Why a revision must not be applied, or None."""
    if not enforce or status is SignatureStatus.GOOD:
        return None
    if status is SignatureStatus.NOT_CHECKED:
        return "signatures are required but were not checked"
    reason = {SignatureStatus.UNSIGNED: "the commit is not signed",
              SignatureStatus.BAD: "the commit's signature is bad",
              SignatureStatus.UNTRUSTED: "the commit is not signed by an allowed signer"}[status]
    return f"{reason}{f': {detail}' if detail else ''}"


# --- watching ------------------------------------------------------------------------------------------

def debounce_deadline(first: float, last: float, quiet: float, max_wait: float) -> float:
    """When a burst of events that began at `first` and last saw one at `last` should fire: after
    `quiet` seconds of silence, but never later than `max_wait` after the first event."""
    return min(last + quiet, first + max(max_wait, quiet))


def ref_watch_files(git_dir: Path, branch: str) -> list[Path]:
    """The files a push to `branch` of the repository at git_dir rewrites (one of them at least)."""
    return [git_dir / "refs" / "heads" / branch, git_dir / "packed-refs", git_dir / "HEAD",
            git_dir / "logs" / "HEAD", git_dir / "logs" / "refs" / "heads" / branch]

