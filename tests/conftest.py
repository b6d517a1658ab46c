"""Shared fixtures: the real 3-node sandbox cluster (session-wide), started and torn down by the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
REFERENCE = REPO / "desired" / "kamailio"


def sandbox_state(name: str) -> str:
    """A test module's own sandbox state directory. HA_GITOPS_TEST_SANDBOX_PREFIX lets a second checkout
    run the suite beside this one without sharing a sandbox."""
    return os.environ.get("HA_GITOPS_TEST_SANDBOX_PREFIX", "/var/lib/ha-gitops-sandbox-") + name


def sandbox_repo_dir(name: str) -> Path:
    """A test module's git repository for sandbox agents: not under /tmp (every node must see it), and
    apart per checkout like the sandbox state."""
    return Path(sandbox_state(f"repo-{name}"))


TEST_STATE_DIR = sandbox_state("tests")


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the sandbox tests must run, not skip")
        pytest.skip("the sandbox needs root")


@pytest.fixture(scope="session")
def private_crm_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A crm-conversion cache of the tests' own: they never read or fill the machine's cache."""
    cache = tmp_path_factory.mktemp("crm-cache")
    old = os.environ.get("HA_GITOPS_CACHE_DIR")
    os.environ["HA_GITOPS_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("HA_GITOPS_CACHE_DIR", None)
    else:
        os.environ["HA_GITOPS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """The reference cluster, up once per session; every test leaves it whole (see `whole_sandbox`)."""
    need_root()
    from controller.sandbox.manager import Sandbox

    sb = Sandbox(TEST_STATE_DIR)
    sb.down()
    sb.up(REFERENCE, timeout=90)
    yield sb
    sb.down(keep_logs=os.environ.get("CI") == "true")


@pytest.fixture
def whole_sandbox(sandbox: object) -> Iterator[object]:
    """The session sandbox with every node powered, connected and online, before and after the test."""
    from controller.sandbox.manager import Sandbox

    assert isinstance(sandbox, Sandbox)
    _make_whole(sandbox)
    yield sandbox
    _make_whole(sandbox)


def _make_whole(sb: object) -> None:
    from controller.sandbox.manager import Sandbox

    assert isinstance(sb, Sandbox)
    spec = sb.spec()
    for n in spec.nodes:
        if sb.net.is_cut(n.index):
            sb.heal(n.name)
        sb.start(n.name)
    sb.wait_healthy(timeout=90, expect_online=[n.name for n in spec.nodes])
