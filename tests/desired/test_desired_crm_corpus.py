"""The crm corpus: what crmsh accepts converts to the same XML; what it rejects is our error with a line.

The crmsh cibtests inputs are crm *command scripts* (configure ... commit quit), not `configure
show` output, so crmsh's `configure load` rejects them at line 1; the test holds either way
because the expectation comes from running crmsh itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CORPUS, crmsh_directly
from lxml import etree

from controller.desired.crm import CrmConversionError, crm_to_configuration

FILES = sorted(p for d in ("crmsh-cibtests", "crmsh-testcases-show-extracted", "crmsh-doc")
               for p in (CORPUS / "crm" / d).iterdir())


def test_corpus_present() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_crm_corpus_file(path: Path) -> None:
    text = path.read_text()
    rc, cib = crmsh_directly(text)
    if rc == 0:
        conversion = crm_to_configuration(text, source=str(path))
        parser = etree.XMLParser(remove_blank_text=True)
        expected = etree.fromstring(cib, parser).find("configuration")
        got = etree.fromstring(conversion.configuration, parser)
        assert etree.tostring(got, method="c14n") == etree.tostring(expected, method="c14n")
    else:
        with pytest.raises(CrmConversionError) as exc:
            crm_to_configuration(text, source=str(path))
        errors = [f for f in exc.value.findings if f.severity == "error"]
        assert errors and errors[0].file == str(path)
        assert any(f.line is not None and 1 <= f.line <= text.count("\n") + 1 for f in errors), errors
