"""Fixtures for the source tests: git isolated from the user's configuration, a fresh upstream repo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.source.git import GitSource
from controller.source.models import SourceConfig
from tests.source.sourcetestlib import CLUSTER, Upstream


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.delenv("GNUPGHOME", raising=False)


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream(tmp_path)
    up.commit({**CLUSTER, "README.md": "docs\n"}, "initial")
    return up


@pytest.fixture
def make_source(tmp_path: Path) -> Iterator[object]:
    made: list[GitSource] = []

    def make(url: str, **kw: object) -> GitSource:
        cfg = SourceConfig(repo_url=url, path="cluster", cache_dir=tmp_path / "cache",
                           retry_initial=1.0, retry_max=8.0, git_timeout=30, **kw)  # type: ignore[arg-type]
        src = GitSource(cfg)
        made.append(src)
        return src

    yield make
    for s in made:
        s.close()
