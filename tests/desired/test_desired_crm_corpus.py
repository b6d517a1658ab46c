"""The crm corpus: what crmsh accepts converts to the same XML; what it rejects is our error with a line.

Converted by the agent's warm crmsh, twice (the second time with the resource-agent metadata the first
one left in its caches); the new-process path (the CLI's) is the same code with another runner, and the
reference cluster's tests take it.

The crmsh cibtests inputs are crm *command scripts* (configure ... commit quit), not `configure
show` output, so crmsh's `configure load` rejects them at line 1; the test holds either way
because the expectation comes from running crmsh itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from controller.desired.crm import CrmConversionError, crm_to_configuration
from controller.desired.crm_worker import WarmCrm
from tests.desired.desiredtestlib import CORPUS, crmsh_directly

FILES = sorted(p for d in ("crmsh-cibtests", "crmsh-testcases-show-extracted", "crmsh-doc")
               for p in (CORPUS / "crm" / d).iterdir())


def test_corpus_present() -> None:
    assert len(FILES) >= 20


@pytest.fixture(scope="module")
def warm_crm() -> Iterator[WarmCrm]:
    worker = WarmCrm()
    yield worker
    worker.close()


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_crm_corpus_file(path: Path, warm_crm: WarmCrm) -> None:
    text = path.read_text()
    rc, cib = crmsh_directly(text)
    runner = warm_crm.run
    for how in ("warm crmsh", "warm crmsh, metadata cached"):
        if rc == 0:
            conversion = crm_to_configuration(text, source=str(path), use_cache=False, runner=runner)
            parser = etree.XMLParser(remove_blank_text=True)
            expected = etree.fromstring(cib, parser).find("configuration")
            got = etree.fromstring(conversion.configuration, parser)
            assert etree.tostring(got, method="c14n") == etree.tostring(expected, method="c14n"), how
        else:
            with pytest.raises(CrmConversionError) as exc:
                crm_to_configuration(text, source=str(path), use_cache=False, runner=runner)
            errors = [f for f in exc.value.findings if f.severity == "error"]
            assert errors and errors[0].file == str(path), how
            lines = text.count("\n") + 1
            assert any(f.line is not None and 1 <= f.line <= lines for f in errors), (how, errors)
