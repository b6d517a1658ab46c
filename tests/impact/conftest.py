"""The reference cluster with a realistic <status>, made by crm_simulate itself (no live cluster)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from controller.cib.xml import parse_xml_file, to_bytes
from controller.command import run
from controller.desired.state import DesiredState, load_desired

REPO = Path(__file__).resolve().parents[2]
KAMAILIO = REPO / "desired" / "kamailio"


@pytest.fixture(scope="session", autouse=True)
def _private_crm_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """load_desired caches crm conversions: tests never read or fill the machine's cache."""
    cache = tmp_path_factory.mktemp("crm-cache")
    old = os.environ.get("HA_GITOPS_CACHE_DIR")
    os.environ["HA_GITOPS_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("HA_GITOPS_CACHE_DIR", None)
    else:
        os.environ["HA_GITOPS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def kamailio(_private_crm_cache: Path) -> DesiredState:
    return load_desired(KAMAILIO)


@pytest.fixture(scope="session")
def running_cib_bytes(kamailio: DesiredState, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """desired/kamailio after crm_simulate brought every node up and started the resources.

    No crm_feature_set on the input: crm_simulate refuses to inject into a CIB claiming a newer
    feature set than its own.
    """
    work = tmp_path_factory.mktemp("kamailio-status")
    config = kamailio.configuration()
    cib = etree.Element("cib", {"validate-with": "pacemaker-3.7", "admin_epoch": "0", "epoch": "5",
                                "num_updates": "0", "have-quorum": "1"})
    cib.append(config)
    etree.SubElement(cib, "status")
    (work / "empty.xml").write_bytes(to_bytes(cib))
    up = [arg for node in config.iterfind("nodes/node") for arg in ("--node-up", node.get("uname"))]
    run(["crm_simulate", "--xml-file", str(work / "empty.xml"), "--simulate",
         "--save-output", str(work / "running.xml"), *up], timeout=60)
    return (work / "running.xml").read_bytes()


@pytest.fixture
def live(running_cib_bytes: bytes, tmp_path: Path) -> etree._Element:
    """A fresh copy of the running reference cluster's CIB (tests may modify it)."""
    path = tmp_path / "live.xml"
    path.write_bytes(running_cib_bytes)
    return parse_xml_file(path)


@pytest.fixture
def desired_config(kamailio: DesiredState) -> etree._Element:
    return copy.deepcopy(kamailio.configuration())
