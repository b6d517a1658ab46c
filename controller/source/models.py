"""What the source hands to the rest of the agent: revisions, changed files, the outcome of a sync."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.settings import normalise_folder

if TYPE_CHECKING:
    from controller.settings import AgentSettings


class SignatureStatus(StrEnum):
    GOOD = "good"                # valid signature by an allowed signer
    BAD = "bad"                  # the signature does not match the commit (or the key is revoked)
    UNTRUSTED = "untrusted"      # signed, but not by an allowed signer (or the key is unknown/expired)
    UNSIGNED = "unsigned"
    NOT_CHECKED = "not-checked"  # verification is not configured


class ChangedFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Relative to the cluster folder, '/'-separated")
    change: Literal["added", "modified", "deleted", "type-changed"]


class Revision(BaseModel):
    """One commit of the followed branch, as far as the cluster folder is concerned."""

    model_config = ConfigDict(frozen=True)

    sha: str
    author: str = Field(description="'Name <email>'")
    committer: str
    committed_at: datetime
    message: str
    folder_tree: str | None = Field(description="Tree id of the cluster folder; None if the folder is absent")
    signature: SignatureStatus = SignatureStatus.NOT_CHECKED
    signer: str | None = Field(None, description="Who signed: GPG uid/fingerprint or SSH principal/key")
    signature_detail: str | None = None
    previous_sha: str | None = Field(None, description="The revision the changes are relative to")
    changed_files: list[ChangedFile] | None = Field(
        None, description="Files of the cluster folder changed since previous_sha; None when unknown "
                          "(no previous revision, or it is no longer in the repository)")

    @property
    def summary(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


class SyncResult(BaseModel):
    """The outcome of one sync(): what the branch points at now and whether it means work."""

    model_config = ConfigDict(frozen=True)

    ok: bool = Field(description="The fetch succeeded (or was not due and the cache is sound)")
    revision: Revision | None = Field(
        description="The tip of the followed branch: the new one, or the last good one when the fetch failed")
    previous_sha: str | None = Field(description="The tip before this sync")
    moved: bool = Field(False, description="The tip changed")
    forced: bool = Field(False, description="The new tip does not descend from the previous one (force-push)")
    folder_changed: bool = Field(False, description="The cluster folder's content changed: work to do")
    refused: bool = Field(False, description="The tip must not be applied (signature policy)")
    refusal: str | None = None
    error: str | None = Field(None, description="Why the fetch failed; the last good revision stays")
    retry_in: float | None = Field(None, description="Seconds until the next fetch attempt is due")
    skipped: bool = Field(False, description="No fetch was made: waiting out the retry backoff")
    recloned: bool = Field(False, description="The cache was corrupt (or missing) and was cloned afresh")
    checked: bool = Field(False, description="No fetch was made: a cheap check (ls-remote) found the branch "
                                             "where the last fetch left it")


class SourceConfig(BaseModel):
    """The part of the agent settings the source needs."""

    model_config = ConfigDict(frozen=True)

    repo_url: str
    branch: str = "main"
    path: str = "."
    cache_dir: Path
    git_timeout: float = 120.0
    git_ssh_command: str | None = None
    git_ca_file: Path | None = None
    git_token_file: Path | None = None
    retry_initial: float = 5.0
    retry_max: float = 300.0
    allowed_signers: list[str] = Field(default_factory=list)
    enforce_signatures: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return normalise_folder(v)

    @classmethod
    def from_settings(cls, s: AgentSettings) -> SourceConfig:
        return cls(repo_url=s.require_repo("agent"), branch=s.branch, path=s.path, cache_dir=s.cache_dir,
                   git_timeout=s.git_timeout, git_ssh_command=s.git_ssh_command,
                   git_ca_file=s.git_ca_file, git_token_file=s.git_token_file,
                   retry_initial=s.retry_initial, retry_max=s.retry_max,
                   allowed_signers=s.allowed_signers, enforce_signatures=s.enforce_signatures)
