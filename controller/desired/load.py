"""Loading a desired-state folder with crmsh (shell): `load_desired`, what callers use.

The reading itself is pure (controller/desired/state.py, `read_desired`); cib.crm is converted here by
crmsh (controller/desired/crm.py), through `crm` (a CrmRunner: a new `crm` process per conversion by
default, the agent's warm crmsh).
"""

from __future__ import annotations

from pathlib import Path

from controller.desired.crm import CrmRunner, crm_to_configuration
from controller.desired.crm_syntax import CrmConversion
from controller.desired.state import DesiredState, read_desired


def load_desired(path: str | Path, *, crm: CrmRunner | None = None) -> DesiredState:
    """Load a cluster folder, cib.crm converted by crmsh. Raises DesiredStateError (an InputError
    listing every problem with file and line) when a file is missing or cannot be parsed/converted."""

    def convert(text: str, source: str) -> CrmConversion:
        return crm_to_configuration(text, source=source, runner=crm)

    return read_desired(path, convert_crm=convert)
