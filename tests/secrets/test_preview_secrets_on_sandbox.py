"""`ha-gitops preview` of a folder whose resources use `@secret:`: the preview's nodes are no recipient of
its secrets.age, so the preview re-encrypts it to them: the real values with `--identity` (a rotation shows
as `secret changed` and is applied), placeholders without (the change around it is still previewed, and
the report says a value-only change is not). Before, every such preview ended with the base refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.sandbox.manager import Sandbox
from controller.secrets import age
from controller.secrets.folder import write_secrets
from tests.conftest import REFERENCE, REPO, need_root, sandbox_state

pytestmark = pytest.mark.sandbox

PRIMITIVE = ('\nprimitive secret-dummy ocf:pacemaker:Dummy params passwd="@secret:dummy_pw" '
             'op monitor interval=10s timeout=20s\n')
V1, V2 = "first-Secret-9x7", "second-Secret-4q2"


def folder(tmp_path: Path, name: str, operator: Path, value: str, *, stickiness: str = "100") -> Path:
    """The reference cluster plus a Dummy with a secret passwd; secrets.age for the operator only."""
    d = tmp_path / name
    shutil.copytree(REFERENCE, d)
    crm = (d / "cib.crm").read_text()
    assert "resource-stickiness=100" in crm
    (d / "cib.crm").write_text(crm.replace("resource-stickiness=100", f"resource-stickiness={stickiness}")
                               + PRIMITIVE)
    recipient = age.recipient_of(operator)
    (d / "cluster.toml").write_text(f'[secrets]\nrecipients = ["{recipient}"]\n')
    write_secrets(d, {"dummy_pw": value}, [recipient])
    return d


def preview(state: str, base: Path, head: Path, *extra: str) -> tuple[int, dict, str]:
    Sandbox(Path(state) / "sandbox").down()
    shutil.rmtree(state, ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "controller.cli", "preview", "--base", str(base), "--head",
                        str(head), "--format", "json", "--state-dir", state, *extra], capture_output=True,
                       text=True, timeout=600, cwd=REPO)
    assert r.stdout.strip(), r.stderr[-4000:]
    assert not Path(state).exists(), f"{state} left behind"
    report = json.loads(r.stdout)
    why = json.dumps({k: report.get(k) for k in ("outcome", "summary", "verify", "health", "observed")}
                     | {"events": [f"{e['node']} {e['kind']} {e['outcome']}: {e['summary']}"
                                   for e in report.get("events", [])]}, indent=1)
    return r.returncode, report, why + "\n" + r.stdout + r.stderr


@pytest.fixture
def operator(tmp_path: Path) -> Path:
    key = tmp_path / "operator.key"
    age.keygen(key)
    return key


def test_with_the_operators_identity_a_rotation_is_previewed_with_the_real_values(tmp_path: Path,
                                                                                   operator: Path) -> None:
    need_root()
    base = folder(tmp_path, "base", operator, V1)
    head = folder(tmp_path, "head", operator, V2, stickiness="150")
    code, report, text = preview(sandbox_state("preview-secrets-real"), base, head,
                                 "--identity", str(operator))
    assert code == 1, text[:6000]
    assert (report["outcome"], report["agrees"]) == ("applied", True)
    assert report["secrets"] == {"mode": "real", "names": ["dummy_pw"]}
    [secret] = report["plan"]["plan"]["secrets"]
    assert (secret["resource"], secret["param"], secret["state"]) == ("secret-dummy", "passwd", "changed")
    assert V1 not in text and V2 not in text


def test_without_an_identity_placeholders_let_the_change_around_the_secret_be_previewed(
        tmp_path: Path, operator: Path) -> None:
    need_root()
    base = folder(tmp_path, "base", operator, V1)
    head = folder(tmp_path, "head", operator, V2, stickiness="150")
    code, report, text = preview(sandbox_state("preview-secrets-placeholder"), base, head)
    assert code == 1, text[:6000]
    assert (report["outcome"], report["agrees"]) == ("applied", True)
    assert report["secrets"] == {"mode": "placeholder", "names": ["dummy_pw"]}
    [secret] = report["plan"]["plan"]["secrets"]
    assert secret["state"] == "unchanged"  # the same placeholder on both sides
    assert "stickiness" in json.dumps(report["plan"]["plan"]["cib_changes"])
    assert V1 not in text and V2 not in text
