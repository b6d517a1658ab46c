"""Booleans as Pacemaker reads them: the one definition every rule in ha-gitops uses.

Mirrors crm_is_true()/crm_str_to_boolean() in Pacemaker's lib/common/strings.c (2.1): "true", "on",
"yes", "y" and "1" are true, compared without case; anything else (absent included) is not.
"""

from __future__ import annotations

_TRUE = frozenset({"true", "on", "yes", "y", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "0"})


def crm_is_true(value: str | None) -> bool:
    return value is not None and value.lower() in _TRUE


def crm_boolean(value: str | None) -> bool | None:
    """True, False, or None when Pacemaker would not read `value` as a boolean at all."""
    if value is None:
        return None
    v = value.lower()
    return True if v in _TRUE else False if v in _FALSE else None
