"""Every consecutive corpus family pair: our patch, applied by the real cibadmin, gives the new
configuration exactly (attribute order aside)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cib.diff import diff_cib
from tests.cib.cibtestlib import cibadmin_patch, config_text, current, family_pairs, unsupported

PAIRS = family_pairs()


def test_corpus_has_the_families() -> None:
    assert len(PAIRS) > 400


@pytest.mark.parametrize(("old_path", "new_path"), PAIRS, ids=[f"{a.stem}->{b.stem}" for a, b in PAIRS])
def test_patch_reproduces_new_configuration(old_path: Path, new_path: Path, tmp_path: Path) -> None:
    old, new = current(old_path), current(new_path)
    if unsupported(old, new):
        pytest.skip("schema pacemaker-3.10 is newer than Pacemaker 2.1.5 supports")
    result = diff_cib(old, new)
    if not result.changed:
        assert config_text(old) == config_text(new)
        return
    rc, stderr, patched = cibadmin_patch(old, result.patch_xml(), tmp_path)
    assert rc == 0, stderr
    assert config_text(patched) == config_text(new)
