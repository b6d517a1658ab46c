"""Shared fixtures for desired-state tests: a private crm cache and the reference cluster as XML."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KAMAILIO = REPO / "desired" / "kamailio"
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture(scope="session", autouse=True)
def _private_crm_cache(private_crm_cache: Path) -> Iterator[Path]:
    """Tests never read or fill the machine's cache."""
    yield private_crm_cache


def crmsh_directly(crm_text: str) -> tuple[int, bytes]:
    """Ground truth: run crmsh by hand (not through controller code) on an empty CIB file.
    Returns crmsh's exit code and the resulting whole CIB."""
    with tempfile.TemporaryDirectory() as tmp:
        cib = Path(tmp) / "cib.xml"
        cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True,
                                      timeout=30).stdout)
        src = Path(tmp) / "in.crm"
        src.write_text(crm_text)
        env = {**os.environ, "CIB_file": str(cib), "HOME": tmp, "TERM": "dumb"}
        proc = subprocess.run(["crm", "-F", "configure", "load", "replace", str(src)], env=env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        return proc.returncode, cib.read_bytes()


@pytest.fixture(scope="session")
def kamailio_cib_xml() -> bytes:
    """The reference cluster's CIB as a whole <cib> document, produced by crmsh directly."""
    rc, data = crmsh_directly((KAMAILIO / "cib.crm").read_text())
    assert rc == 0
    return data


@pytest.fixture()
def xml_cluster(tmp_path: Path, kamailio_cib_xml: bytes) -> Path:
    """A copy of the reference cluster with its CIB as cib.xml (no crmsh needed to load it)."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "corosync.conf").write_bytes((KAMAILIO / "corosync.conf").read_bytes())
    (folder / "cib.xml").write_bytes(kamailio_cib_xml)
    return folder


@pytest.fixture()
def crm_cluster(tmp_path: Path) -> Path:
    folder = tmp_path / "crmcluster"
    folder.mkdir()
    for name in ("corosync.conf", "cib.crm"):
        (folder / name).write_bytes((KAMAILIO / name).read_bytes())
    return folder
