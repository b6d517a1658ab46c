"""Bounded work on the real sandbox: an oversized cib.crm is refused once, by its size, and a
2,000-primitive change (which died on the old fixed 60 s crm_simulate timeout on every pass) is predicted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.limits import DESIRED_FILE_LIMITS
from controller.sandbox.manager import Sandbox
from tests.agentslib import agents_sandbox, audit, cli, dc
from tests.conftest import sandbox_state
from tests.helpers import GitRepo, wait_for

pytestmark = pytest.mark.sandbox

FOLDER = "kamailio"
CRM = f"{FOLDER}/cib.crm"
AGENT_TOML = "/etc/ha-gitops/agent.toml"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Sandbox, GitRepo]]:
    with agents_sandbox("bounded", FOLDER) as e:
        yield e


def refusals(sb: Sandbox, sha: str) -> list[dict[str, Any]]:
    node = dc(sb)
    return [e for e in audit(sb, node) if e["kind"] == "refused" and e["node"] == node
            and e["commit"] and e["commit"]["sha"] == sha]


def test_an_oversized_cib_crm_is_refused_once_by_its_size(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    limit = DESIRED_FILE_LIMITS["cib.crm"]
    crm = repo.read(CRM)
    big = crm + "".join(f"# padding {i:09d} {'x' * 50}\n" for i in range(limit // 70 + 10))
    assert len(big.encode()) > limit
    sha = repo.commit({CRM: big}, "a cib.crm over its limit")
    refused = wait_for(lambda: next(iter(refusals(sb, sha)), None), 60, "the refusal")
    assert f"over the 512 KB limit for cib.crm ({limit} bytes)" in refused["error"], refused
    assert f"({len(big.encode())} bytes)" in refused["error"]
    # More passes come (a poll every 5 s, a hand edit's CIB change): the refusal is not recorded again.
    sb.exec("kamailio01", ["crm_attribute", "-t", "crm_config", "-n", "bounded-probe", "-v", "1"])
    time.sleep(15)
    assert len(refusals(sb, sha)) == 1
    repo.commit({CRM: crm}, "back to the reference cib.crm")


def test_a_2000_primitive_change_is_predicted_not_timed_out(env: tuple[Sandbox, GitRepo]) -> None:
    sb, repo = env
    dest = Path(sandbox_state("bounded-2000"))  # a folder every node sees
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("corosync.conf", "cib.crm"):
        (dest / name).write_text(repo.read(f"{FOLDER}/{name}"))
    extra = "".join(f"primitive bulk{i:04d} ocf:pacemaker:Dummy \\\n"
                    "\top monitor interval=60s timeout=20s \\\n\tmeta target-role=Stopped\n"
                    for i in range(2000))
    (dest / "cib.crm").write_text(repo.read(CRM) + extra)
    try:
        started = time.monotonic()
        code, out, err = cli(sb, dc(sb), "plan", "--config", AGENT_TOML, "--dir", str(dest), timeout=400)
        assert code == 1 and "Decision: apply" in out, out + err
        assert "impact-unknown" not in out and "time budget" not in out
        assert time.monotonic() - started < 300
    finally:
        shutil.rmtree(dest, ignore_errors=True)
