"""Loading a desired-state folder with crmsh (shell): `load_desired`, what callers use.

The reading itself is pure (controller/desired/state.py, `read_desired`); cib.crm is converted here by
crmsh (controller/desired/crm.py), through `crm` (a CrmRunner: a new `crm` process per conversion by
default, the agent's warm crmsh); secrets.age is decrypted with `identity` (controller/secrets/age.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from controller.desired.crm import CrmRunner, crm_to_configuration
from controller.desired.crm_syntax import CrmConversion
from controller.desired.state import DesiredState, read_desired

# One decrypt per secrets.age content and identity: a pass (and every pass after it on the same
# revision) reuses it. Bounded: a new revision replaces the entries of older ones.
_DECRYPTED: dict[tuple[str, str], dict[str, str]] = {}
_MAX_CACHED = 4


def decrypt_cached(identity: Path, ciphertext: str, source: str) -> Mapping[str, str]:
    from controller.secrets.folder import decrypt_text

    key = (hashlib.sha256(ciphertext.encode()).hexdigest(), str(identity))
    if key not in _DECRYPTED:
        value = decrypt_text(ciphertext, identity, source=source)
        while len(_DECRYPTED) >= _MAX_CACHED:
            _DECRYPTED.pop(next(iter(_DECRYPTED)))
        _DECRYPTED[key] = value
    return dict(_DECRYPTED[key])


def load_desired(path: str | Path, *, crm: CrmRunner | None = None,
                 identity: Path | None = None) -> DesiredState:
    """Load a cluster folder, cib.crm converted by crmsh, secrets.age decrypted with `identity` (None:
    not decrypted; `@secret:` parameters still become `lrm://`). Raises DesiredStateError (an InputError
    listing every problem with file and line) when a file is missing or cannot be parsed/converted, or
    secrets.age cannot be decrypted with `identity`."""

    def convert(text: str, source: str) -> CrmConversion:
        return crm_to_configuration(text, source=source, runner=crm)

    def decrypt(ciphertext: str, source: str) -> Mapping[str, str]:
        assert identity is not None
        return decrypt_cached(identity, ciphertext, source)

    return read_desired(path, convert_crm=convert, decrypt_secrets=decrypt if identity else None)
