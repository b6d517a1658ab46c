"""The desired-state folder (corosync.conf, cib.crm or cib.xml, cluster.toml) -> a validated DesiredState.

The names below are loaded on first use (PEP 562), so importing one module of the package, say
controller.desired.policy, does not also import the loader and the validator (crmsh, crm_verify).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.desired.findings import DesiredStateError, Finding
    from controller.desired.load import load_desired
    from controller.desired.policy import ClusterPolicy, IgnoreRule, load_policy, parse_policy
    from controller.desired.state import DesiredState
    from controller.desired.validate import ValidationReport, validate_desired, validate_state

_HOME = {
    "DesiredStateError": "findings", "Finding": "findings",
    "ClusterPolicy": "policy", "IgnoreRule": "policy", "load_policy": "policy", "parse_policy": "policy",
    "DesiredState": "state", "load_desired": "load",
    "ValidationReport": "validate", "validate_desired": "validate", "validate_state": "validate",
}

__all__ = [
    "ClusterPolicy", "DesiredState", "DesiredStateError", "Finding", "IgnoreRule", "ValidationReport",
    "load_desired", "load_policy", "parse_policy", "validate_desired", "validate_state",
]


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
