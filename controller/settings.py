"""The agent's configuration: /etc/ha-gitops/agent.toml, overridden by HA_GITOPS_* environment variables.

Precedence, highest first: explicit overrides (the CLI) > environment (HA_GITOPS_<FIELD>) > the TOML file >
defaults. The file path is the argument, else $HA_GITOPS_CONFIG, else DEFAULT_CONFIG_PATH. Every problem
is an InputError naming the file (or the environment variable) and the key.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from controller.audit import DEFAULT_URL as DEFAULT_AUDIT_URL
from controller.desired.substitute import Substitution
from controller.env_names import SETTINGS_PREFIX
from controller.errors import InputError
from controller.notifications import NotifyTarget

DEFAULT_CONFIG_PATH = Path("/etc/ha-gitops/agent.toml")
CONFIG_ENV = "HA_GITOPS_CONFIG"

DriftMode = Literal["correct", "report", "off"]
DEFAULT_HTTP_LISTEN = "127.0.0.1:9811"
HTTP_OFF = frozenset({"", "off", "none", "false", "no"})
WarmCrmMode = Literal["dc", "always", "off"]
_BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<![./])(?<!\.lock)$")


class AgentSettings(BaseSettings):
    """What one agent follows and how it behaves. Field descriptions are the reference documentation."""

    model_config = SettingsConfigDict(env_prefix=SETTINGS_PREFIX, extra="forbid", frozen=True,
                                      validate_default=True)

    repo_url: str | None = Field(
        default=None,
        description="The git repository holding the desired state: an ssh (git@host:org/repo.git, "
                    "ssh://...), https:// or file:// URL, or a local path. Required by the agent and by "
                    "the verbs that read git (plan, apply without --dir); status, rollback, audit, "
                    "suspend and resume work without it.")
    branch: str = Field(
        "main", description="The branch to follow. The agent applies the tip of this branch; a force-push "
                            "is followed (no merge), so history rewrites take effect like any commit.")
    path: str = Field(
        ".", description="The cluster folder inside the repository (corosync.conf, cib.crm or cib.xml, "
                         "cluster.toml), relative to the repository root. Only commits that change this "
                         "folder cause work.")
    poll_interval: float = Field(
        60.0, gt=0, description="Seconds between two fetches of the remote. A local or file:// remote is "
                                "also watched, so a push there is picked up within a second.")
    watch_source: bool = Field(
        True, description="Watch a local or file:// remote for pushes (inotify), so a push there is picked "
                          "up within a second. Off: only polls and webhooks (a remote on a network file "
                          "system, where inotify sees no other host's writes).")
    git_timeout: float = Field(
        120.0, gt=0, description="Seconds a clone or fetch may take before it is abandoned and retried.")
    git_ssh_command: str | None = Field(
        None, description="GIT_SSH_COMMAND for ssh remotes, e.g. \"ssh -i /etc/ha-gitops/deploy_key "
                          "-o StrictHostKeyChecking=yes\". Default: ssh as configured for the agent's user "
                          "(always in batch mode: the agent never prompts).")
    git_ca_file: Path | None = Field(
        None, description="For https remotes: the CA certificate(s) (PEM) that signed the server's "
                          "certificate, instead of the system's CA store (git's http.sslCAInfo).")
    git_token_file: Path | None = Field(
        None, description="For https remotes: a file holding the access token (one line; keep it 0600). "
                          "It is sent as HTTP basic auth, with the URL's user name (https://bot@host/...) "
                          "or \"git\"; it is read at every fetch and never put on a command line, in a URL "
                          "or in a log.")
    retry_initial: float = Field(
        5.0, gt=0, description="Seconds before the first retry after a failed fetch; doubled after each "
                               "further failure (with up to 20% jitter), up to retry_max.")
    retry_max: float = Field(
        300.0, gt=0, description="The longest wait between two retries of a failing fetch, in seconds.")
    cache_dir: Path = Field(
        Path("/var/lib/ha-gitops/repo"),
        description="Where the agent keeps its clone of the repository (bare, no working tree) and the "
                    "signature-verification keyring. Deleted and re-cloned when found corrupt.")
    allowed_signers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Who may sign the commits the agent applies. Each entry is a GPG key fingerprint "
                    "(40 or 64 hex digits; the key must be in a key file listed here), an SSH public key "
                    "(\"ssh-ed25519 AAAA... comment\"), or the absolute path of a file: an ASCII-armored "
                    "or binary GPG public key file (every key in it is allowed) or an ssh allowed_signers "
                    "file. When set, a tip commit without a good signature from one of them is refused. "
                    "In the environment: a JSON list, or entries separated by newlines.")
    require_signed: bool | None = Field(
        None, description="Refuse commits without a good signature from allowed_signers. Default: true "
                          "when allowed_signers is set. false verifies and records signatures but applies "
                          "unsigned commits too (for a migration); true without allowed_signers is an "
                          "error.")
    audit_url: str = Field(
        DEFAULT_AUDIT_URL, description="The audit database: sqlite:////path/audit.db (one per node) or "
                                       "postgresql://user@host/db (shared by the agents).")
    drift_mode: DriftMode = Field(
        "correct", description="What to do when the live cluster differs from git: \"correct\" puts it "
                               "back and records it, \"report\" only records it, \"off\" does not look.")
    warm_crm: WarmCrmMode = Field(
        "dc", description="Keep crmsh loaded (a helper process of about 45 MB) so that a push converts in "
                          "about half the time: \"dc\" on the node that writes (the DC's agent), "
                          "\"always\" on every node, \"off\" never (every conversion starts crm anew).")
    drift_debounce: float = Field(
        1.0, ge=0, description="Seconds the CIB must stay unchanged before a drift check runs, so a burst "
                               "of changes (an operator's crm session, Pacemaker's own writes) is one check.")
    watch_debounce: float = Field(
        0.05, ge=0, description="Seconds a watched local repository's refs must stay quiet before the "
                                "agent fetches (a commit or push rewrites the ref and its reflog).")
    node_name: str = Field(
        default_factory=socket.gethostname,
        description="This node's name as Corosync and Pacemaker know it. Default: the host name.")
    service_command: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["systemctl"],
        description="The command that starts, stops and restarts the corosync and pacemaker services; "
                    "the agent appends the action and the unit (\"restart corosync\"). A string is split "
                    "like a shell would, or give a list.")
    substitute: list[Substitution] = Field(
        default_factory=list,
        description="[[substitute]] tables: run primitives whose agent cannot run on these nodes as another "
                    "agent (match_class, match_type glob, to_class, to_provider, to_type, keep_params, "
                    "reason). Applied to the effective desired state only, never to the files, and reported "
                    "by plan, status and the audit trail. `sandbox up --agents` sets systemd -> "
                    "ocf:pacemaker:Dummy.")
    notify: list[NotifyTarget] = Field(
        default_factory=list,
        description="[[notify]] tables: where the agents send notifications of events (url: an Apprise URL, "
                    "or url_file: a file holding one; name; events: kinds or kind:outcome pairs, default "
                    "drift, refusals, rollbacks, failed or inconclusive verifies, failed or paused rollouts, "
                    "errors, suspend/resume, adopt; timeout; retry_initial; retry_max). One message per "
                    "event cluster-wide, sent from an outbox in the audit database, retried until delivered.")
    status_file: Path = Field(
        Path("/run/ha-gitops/agent-status.json"),
        description="Where the agent publishes its last pass for `ha-gitops status`, besides the audit "
                    "trail: off the audit disk, so `status` can say the trail cannot be written.")
    age_identity: Path = Field(
        Path("/etc/ha-gitops/age.key"),
        description="This node's age identity (mode 0600, made with `age-keygen -o`): decrypts the desired "
                    "folder's secrets.age, whose cluster.toml [secrets] recipients must list its public "
                    "recipient (`age-keygen -y FILE`). A folder with secrets this node cannot decrypt is "
                    "refused whole.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="The agent's log level.")
    http_listen: str = Field(
        DEFAULT_HTTP_LISTEN,
        description="Where the agent's HTTP server listens (webhooks /hooks/github, /hooks/gitlab, "
                    "/hooks/gitea, /hooks/generic; /metrics; /healthz): \"HOST:PORT\", \":PORT\" or "
                    "\"0.0.0.0:PORT\" for every interface, \"[::]:PORT\" for IPv6. The default answers on "
                    "this node only: a forge's webhooks and a Prometheus server elsewhere need the node's "
                    "address or 0.0.0.0. \"off\" (or \"\") runs no HTTP server.")
    webhook_secret: SecretStr | None = Field(
        None, description="The secret shared with the forge's webhooks: GitHub's and Gitea/Forgejo's HMAC "
                          "key, GitLab's secret token, the generic hook's HMAC key. Better kept in "
                          "webhook_secret_file (which wins when both are set); without either, /hooks/* "
                          "answer 403 and trigger nothing.")
    webhook_secret_file: Path | None = Field(
        None, description="A file holding the webhook secret (read once at the agent's start; surrounding "
                          "whitespace is ignored). Keep it 0600, owned by the agent's user.")
    webhook_max_body: int = Field(
        1024 * 1024, ge=1024, description="The largest webhook body accepted, in bytes; a larger one gets "
                                          "413 and triggers nothing.")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes in through init kwargs (see load_settings); no .env or secrets dirs.
        return init_settings, env_settings

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v

    def require_repo(self, verb: str) -> str:
        """The repository URL, or an error saying where to set it and which verb needs it."""
        if self.repo_url is None:
            raise InputError(f"repo_url is not set: `ha-gitops {verb}` follows a git repository (set "
                             f"repo_url in {config_path(None)} or {SETTINGS_PREFIX}REPO_URL, or pass --dir)",
                             element="repo_url")
        return self.repo_url

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        v = v.strip().removeprefix("refs/heads/")
        if not _BRANCH_RE.match(v):
            raise ValueError(f"not a valid branch name: {v!r}")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return normalise_folder(v)

    @field_validator("allowed_signers", mode="before")
    @classmethod
    def _signers(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.lstrip().startswith("[") else v.splitlines()
        if isinstance(v, list):
            return [s.strip() for s in v if isinstance(s, str) and s.strip()] + \
                   [s for s in v if not isinstance(s, str)]
        return v

    @field_validator("allowed_signers")
    @classmethod
    def _signer_entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            if not (_is_fingerprint(entry) or _is_ssh_key(entry) or entry.startswith("/")):
                raise ValueError(f"{entry[:60]!r} is neither a GPG fingerprint, an SSH public key "
                                 "nor an absolute file path")
        return v

    @field_validator("http_listen")
    @classmethod
    def _http_listen(cls, v: str) -> str:
        v = v.strip()
        if v.lower() in HTTP_OFF:
            return "off"
        parse_listen(v)
        return v

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) the HTTP server binds, or None when it is off."""
        return None if self.http_listen == "off" else parse_listen(self.http_listen)

    @field_validator("notify")
    @classmethod
    def _notify_urls(cls, v: list[NotifyTarget]) -> list[NotifyTarget]:
        if not v:
            return v  # Apprise is imported only when there is something to send
        from controller.notify_send import check_urls

        keys: set[str] = set()
        urls: list[str] = []
        for i, target in enumerate(v):
            # Messages name the table and its scheme, never the URL: it may hold a credential.
            try:
                urls.append(target.secret_url())
            except ValueError as exc:
                raise ValueError(f"[{i}] ({target.label}): {exc}") from None
            if target.key in keys:
                raise ValueError(f"[{i}] ({target.label}): a second target of that name "
                                 "(give each its own name)")
            keys.add(target.key)
        for i, (target, problem) in enumerate(zip(v, check_urls(urls), strict=True)):
            if problem:
                raise ValueError(f"[{i}] ({target.label}): {problem}")
        return v

    @field_validator("service_command", mode="before")
    @classmethod
    def _service_command(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.lstrip().startswith("[") else shlex.split(v)
        if isinstance(v, list) and not v:
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if self.require_signed and not self.allowed_signers:
            raise ValueError("require_signed = true needs allowed_signers")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self

    @property
    def enforce_signatures(self) -> bool:
        """Whether a commit without a good allowed signature is refused."""
        return bool(self.allowed_signers) if self.require_signed is None else self.require_signed

    @property
    def verify_signatures(self) -> bool:
        """Whether signatures are checked at all (and recorded)."""
        return bool(self.allowed_signers)


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT", ":PORT" (every interface), "[V6]:PORT" -> (host, port); ValueError names the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. \"127.0.0.1:9811\", \"0.0.0.0:9811\") or \"off\"")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, e.g. \"[::]:9811\"")
    return host or "0.0.0.0", int(port)


def normalise_folder(v: str) -> str:
    """A repository-relative folder as git names it ("." for the root); rejects escapes."""
    raw = v.strip().replace("\\", "/")
    if raw.startswith("/"):
        raise ValueError("must be relative to the repository root")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if ".." in parts:
        raise ValueError("must not contain '..'")
    if parts and parts[0] == ".git":
        raise ValueError("must not be inside .git")
    return "/".join(parts) or "."


def _is_fingerprint(entry: str) -> bool:
    return re.fullmatch(r"(?:0x)?[0-9A-Fa-f]{40}(?:[0-9A-Fa-f]{24})?", entry.replace(" ", "")) is not None


def _is_ssh_key(entry: str) -> bool:
    return re.match(r"^(ssh-|ecdsa-sha2-|sk-)\S+ [A-Za-z0-9+/=]{20,}", entry) is not None


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The configuration file: the argument, else $HA_GITOPS_CONFIG, else the default."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None, *,
                  overrides: Mapping[str, Any] | None = None) -> AgentSettings:
    """Read the TOML file (if the default is absent, environment and defaults alone are used)."""
    explicit = path is not None or CONFIG_ENV in os.environ
    file = config_path(path)
    text = ""
    data: dict[str, Any] = {}
    if file.exists() or explicit:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read the agent configuration: {exc.strerror or exc}", file=str(file)) \
                from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+)", str(exc))
            raise InputError(f"invalid TOML: {exc}", file=str(file), line=int(m.group(1)) if m else None) \
                from exc
    fields = AgentSettings.model_fields
    for key in data:
        if key not in fields:
            raise InputError(f"unknown key {key!r} (known: {', '.join(fields)})", file=str(file),
                             line=_key_line(text, key), element=key)
    over = dict(overrides or {})
    for key in over:
        if key not in fields:
            raise InputError(f"unknown setting {key!r}", element=key)
    try:
        return _layered(data, over)
    except ValidationError as exc:
        raise _input_error(exc, file, text, data) from None


def _layered(data: dict[str, Any], over: dict[str, Any]) -> AgentSettings:
    """Overrides > environment > file > defaults, as pydantic-settings sources in that order."""

    class _Layered(AgentSettings):
        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                       init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource,
                                       dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource,
                                       ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (InitSettingsSource(settings_cls, over), env_settings,
                    InitSettingsSource(settings_cls, data))

    # Re-validate as the public class (model_validate reads no environment).
    return AgentSettings.model_validate(_Layered().model_dump())


def _input_error(exc: ValidationError, file: Path, text: str, data: dict[str, Any]) -> InputError:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    more = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    # Inside a table: notify[0].events (an array of tables counts from 0).
    name = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"][1:])
    if msg.startswith("[") and len(err["loc"]) == 1:  # a list validator naming the entry: notify[1] (...)
        name, _, msg = (key + msg).partition(": ")
    if not key:
        return InputError(msg + more, file=str(file))
    env = SETTINGS_PREFIX + key.upper()
    if env in os.environ:
        return InputError(f"{name}: {msg}{more}", file=f"environment {env}", element=key)
    if err["type"] == "missing":
        return InputError(f"missing key {key!r} (or set {env}){more}", file=str(file), element=key)
    where = str(file) if key in data else "defaults"
    return InputError(f"{name}: {msg}{more}", file=where, line=_key_line(text, key) if key in data else None,
                      element=key)


def _key_line(text: str, key: str) -> int | None:
    pat = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for n, line in enumerate(text.splitlines(), 1):
        if pat.match(line):
            return n
    return None
