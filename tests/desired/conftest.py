"""Shared fixtures for desired-state tests: a private crm cache and the reference cluster as XML
(plain helpers and constants are in desiredtestlib.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desired.desiredtestlib import KAMAILIO, crmsh_directly


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
