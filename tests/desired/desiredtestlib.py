"""Helpers for the desired-state tests: the reference cluster's folder, the corpus, crmsh run by hand."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]
KAMAILIO = REPO / "desired" / "kamailio"
CORPUS = CORPUS


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
