"""Shared fixtures: the real 3-node sandbox cluster (session-wide), started and torn down by the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.env_names import CRM_CACHE_ENV
from tests.helpers import free_port
from tests.notify_receiver import Receiver

REPO = Path(__file__).resolve().parents[1]
# The real corpora live beside the checkout (../shared/corpus, see its README); a checkout elsewhere (a
# clone under /tmp) names them with HA_GITOPS_CORPUS.
CORPUS = Path(os.environ.get("HA_GITOPS_CORPUS") or REPO.parent / "shared" / "corpus")
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


# `pytest -m "not sandbox"` must be exact: a test is marked sandbox when it, or a fixture it uses, starts the
# sandbox (the `sandbox` fixture, a Sandbox of its own) or needs root (need_root). `slow` marks the files
# that run crmsh, Pacemaker's tools or the CLI many times over, or wait on real time: `make test-fast`
# leaves them out.
SANDBOX_FIXTURES = frozenset({"sandbox", "whole_sandbox"})
SLOW_FILES = frozenset({"tests/cib/test_cib_corpus_pairs.py", "tests/desired/test_desired_crm_corpus.py",
                        "tests/desired/test_warm_crm.py", "tests/desired/test_desired_invalid.py",
                        "tests/desired/test_desired_load.py", "tests/audit/test_audit_cli.py",
                        "tests/source/test_source_watchers.py", "tests/audit/test_audit_masking_corpus.py",
                        "tests/desired/test_export_corpus.py",
                        "tests/desired/test_plan_base.py", "tests/ci/test_review_script.py"})


def _uses_root(func: object) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and bool({"need_root", "Sandbox"} & set(code.co_names))


def pytest_configure(config: pytest.Config) -> None:
    # Without the corpus, dozens of tests would fail one by one on a missing file: say it once instead.
    if not (CORPUS / "README.md").is_file():
        raise pytest.UsageError(f"the test corpus is not at {CORPUS}: check out ../shared next to this "
                                "repository or set HA_GITOPS_CORPUS to its corpus directory")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixtures = item._fixtureinfo.name2fixturedefs
        if (SANDBOX_FIXTURES & set(item.fixturenames) or _uses_root(item.obj)
                or any(_uses_root(d.func) for defs in fixtures.values() for d in defs)):
            item.add_marker(pytest.mark.sandbox)
        if item.path.relative_to(REPO).as_posix() in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


def need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the sandbox tests must run, not skip")
        pytest.skip("the sandbox needs root")


@pytest.fixture(scope="session", autouse=True)
def private_crm_cache() -> Iterator[Path]:
    """The tests' own crm-conversion cache: they never read or fill the machine's. It lives beside the
    sandboxes (not under /tmp, which is private in a node) so the sandbox agents and every CLI run in a
    node share it: a cold conversion of the reference cib.crm costs seconds per process, and every module
    starts three agents. Entries are keyed by crmsh's version and the text (controller/desired/crm.py), so
    one kept from an earlier run is what crmsh would answer now; tests of the cache use their own."""
    cache = Path(sandbox_state("crm-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    old = os.environ.get(CRM_CACHE_ENV)
    os.environ[CRM_CACHE_ENV] = str(cache)
    yield cache
    if old is None:
        os.environ.pop(CRM_CACHE_ENV, None)
    else:
        os.environ[CRM_CACHE_ENV] = old


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


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A real HTTP notification receiver on loopback (tests/notify_receiver.py), stopped afterwards."""
    r = Receiver("127.0.0.1", free_port(), tmp_path / "received.jsonl")
    r.start()
    yield r
    r.stop()
