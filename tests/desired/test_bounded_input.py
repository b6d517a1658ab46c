"""Bounded input: every desired file has a size limit, crmsh a time budget that grows with cib.crm.

A file over its limit is refused before anything reads it, with an error naming the file, its size and
the limit (a 50 MB cib.crm used to cost minutes of crmsh and 564 MB); a conversion past its budget is an
error naming the budget and the size it was computed from. Real clusters stay far below both.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import controller.desired.crm
import controller.limits
from controller.desired import validate_desired
from controller.desired.crm_syntax import CrmConversion
from controller.desired.findings import DesiredStateError, Finding
from controller.desired.load import load_desired
from controller.desired.state import read_desired
from controller.limits import DESIRED_FILE_LIMITS, MB, crm_budget
from tests.desired.desiredtestlib import CORPUS, KAMAILIO, REPO

CLI = str(REPO / ".venv" / "bin" / "ha-gitops")
LARGEST_REAL_CIB = CORPUS / "cib" / "pacemaker-scheduler" / "params-6.xml"  # 131 primitives, 780 KB


def no_crmsh(text: str, source: str) -> CrmConversion:
    raise AssertionError("crmsh must not run on a file refused by its size")


def folder(tmp_path: Path, **files: bytes) -> Path:
    out = tmp_path / "cluster"
    out.mkdir(parents=True)
    (out / "corosync.conf").write_bytes((KAMAILIO / "corosync.conf").read_bytes())
    (out / "cib.xml").write_bytes(b"<configuration><crm_config/><nodes/><resources/><constraints/>"
                                  b"</configuration>")
    for name, data in files.items():
        (out / name.replace("_", ".")).write_bytes(data)
    return out


def padded(head: bytes, size: int, comment: bytes = b"# %s") -> bytes:
    """A file of exactly `size` bytes: real content, then comment lines, then blank lines."""
    line = comment.replace(b"%s", b"x" * 66) + b"\n"
    body = head + line * ((size - len(head)) // len(line))
    return body + b"\n" * (size - len(body))


def findings_of(path: Path) -> list[Finding]:
    with pytest.raises(DesiredStateError) as err:
        read_desired(path, convert_crm=no_crmsh)
    return err.value.findings


def test_a_50_mb_cib_crm_is_refused_at_once_naming_size_and_limit(tmp_path: Path) -> None:
    path = folder(tmp_path)
    (path / "cib.xml").unlink()
    (path / "cib.crm").write_bytes(padded((KAMAILIO / "cib.crm").read_bytes(), 50 * MB))
    started = time.monotonic()
    res = subprocess.run([CLI, "validate", str(path)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert (f"error: {path / 'cib.crm'}: cib.crm is 50 MB (52428800 bytes), over the 512 KB limit for "
            "cib.crm (524288 bytes)") in res.stdout
    assert time.monotonic() - started < 20  # crmsh never ran (it took minutes on this file)


@pytest.mark.parametrize(("name", "head", "comment"), [
    ("cib.xml", b"<configuration><crm_config/><nodes/><resources/><constraints/></configuration>\n",
     b"<!-- %s -->"),
    ("corosync.conf", (KAMAILIO / "corosync.conf").read_bytes(), b"# %s"),
    ("cluster.toml", b"[settle]\ntimeout = \"120s\"\n", b"# %s"),
], ids=["cib.xml", "corosync.conf", "cluster.toml"])
def test_every_file_has_a_limit_and_the_limit_itself_is_allowed(tmp_path: Path, name: str, head: bytes,
                                                                 comment: bytes) -> None:
    limit = DESIRED_FILE_LIMITS[name]
    at_limit = folder(tmp_path / "at", **{name.replace(".", "_"): padded(head, limit, comment)})
    assert read_desired(at_limit, convert_crm=no_crmsh).digest
    over = folder(tmp_path / "over", **{name.replace(".", "_"): padded(head, limit + 1, comment)})
    [finding] = findings_of(over)
    assert finding.file == str(over / name)
    assert finding.message.startswith(f"{name} is ")
    assert f"({limit + 1} bytes), over the " in finding.message and f"limit for {name} ({limit} bytes)" in (
        finding.message)


def test_real_clusters_are_far_below_the_limits(tmp_path: Path) -> None:
    for name in ("cib.crm", "corosync.conf"):
        assert (KAMAILIO / name).stat().st_size * 500 < DESIRED_FILE_LIMITS[name]
    # The largest real CIB of the corpus, a whole <cib> with its status, loads as cib.xml with room to spare.
    assert LARGEST_REAL_CIB.stat().st_size * 10 < DESIRED_FILE_LIMITS["cib.xml"]
    path = folder(tmp_path, cib_xml=LARGEST_REAL_CIB.read_bytes())
    assert read_desired(path, convert_crm=no_crmsh).cib_format == "xml"


def crm_with(primitives: int) -> str:
    prims = "".join(f"primitive p{i} ocf:pacemaker:Dummy \\\n\top monitor interval=30s timeout=20s\n"
                    for i in range(primitives))
    return prims + "property cib-bootstrap-options: \\\n\tstonith-enabled=false\n"


def test_crmsh_budget_grows_with_the_text() -> None:
    small, big = crm_budget((KAMAILIO / "cib.crm").read_text()), crm_budget(crm_with(2000))
    assert small.seconds < big.seconds <= controller.limits.CRM_CAP
    assert big.describe().endswith("KB of cib.crm)")


def test_crmsh_past_its_budget_is_an_error_naming_budget_and_size(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = folder(tmp_path)
    (path / "cib.xml").unlink()
    text = crm_with(300)
    (path / "cib.crm").write_text(text)
    kb = -(-len(text.encode()) // 1024)
    monkeypatch.setenv("HA_GITOPS_CRM_CACHE", str(tmp_path / "crm-cache"))  # a hit would never run crmsh
    monkeypatch.setattr(controller.limits, "CRM_BASE", 0.05)
    monkeypatch.setattr(controller.limits, "CRM_PER_KB", 0.001)  # crmsh alone needs more to start
    with pytest.raises(DesiredStateError) as err:
        load_desired(path)
    [finding] = err.value.findings
    assert finding.severity == "error" and finding.file == str(path / "cib.crm")
    assert finding.message.startswith("crmsh's conversion (crm configure load replace) did not finish within "
                                      f"its time budget of {crm_budget(text).seconds:g}s (0.05s + 0.001s x "
                                      f"{kb} KB of cib.crm)")
    # Every pass converts again: the same text is not retried within the same budget (it would block
    # each pass for the whole budget), and says so at once.
    calls: list[object] = []
    real_run = controller.desired.crm._run_once

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real_run(*args, **kw)

    monkeypatch.setattr(controller.desired.crm, "_run_once", counted)
    report = validate_desired(path)
    assert not report.valid and report.errors[0].message == finding.message
    assert calls == []  # crmsh did not run again
    monkeypatch.undo()
    assert load_desired(path).cib_format == "crm"  # given its real budget, it converts
