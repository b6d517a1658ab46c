"""The environment variables ha-gitops reads that are not settings, and which of the rest are settings.

Every `HA_GITOPS_<KEY>` is an agent setting (pydantic-settings, controller/settings.py), and the environment
wins over agent.toml, so no other variable may look like one: the crm conversion cache is
HA_GITOPS_CRM_CACHE, never HA_GITOPS_CACHE_DIR (the `cache_dir` setting: the agent's clone).
"""

from __future__ import annotations

from collections.abc import Mapping

SETTINGS_PREFIX = "HA_GITOPS_"
CRM_CACHE_ENV = "HA_GITOPS_CRM_CACHE"  # crmsh conversion results (controller/desired/crm.py)
FAULT_FILE_ENV = "HA_GITOPS_FAULT_FILE"  # fault injection points (controller/faults.py)
# Not settings: an agent started by the sandbox may inherit them.
_KEPT = frozenset({CRM_CACHE_ENV, FAULT_FILE_ENV})


def agent_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the HA_GITOPS_* variables that would override an agent's own settings file."""
    return {k: v for k, v in env.items() if not k.startswith(SETTINGS_PREFIX) or k in _KEPT}


__all__ = ["CRM_CACHE_ENV", "FAULT_FILE_ENV", "SETTINGS_PREFIX", "agent_environment"]
