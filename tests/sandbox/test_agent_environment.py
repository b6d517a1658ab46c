"""A sandbox agent's configuration is its agent.toml alone: the HA_GITOPS_<KEY> settings of whoever started
the sandbox do not reach it (the environment wins over the file), the non-setting variables do."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.env_names import CRM_CACHE_ENV, agent_environment
from controller.settings import load_settings


def test_settings_variables_are_dropped_the_others_kept() -> None:
    env = {"PATH": "/usr/bin", "HA_GITOPS_CACHE_DIR": "/var/lib/preview/crm-cache",
           "HA_GITOPS_AGE_IDENTITY": "/root/.config/ha-gitops/age.key", CRM_CACHE_ENV: "/var/lib/p/crm",
           "HA_GITOPS_FAULT_FILE": "/etc/ha-gitops/faults.json"}
    assert agent_environment(env) == {"PATH": "/usr/bin", CRM_CACHE_ENV: "/var/lib/p/crm",
                                      "HA_GITOPS_FAULT_FILE": "/etc/ha-gitops/faults.json"}


def test_the_crm_cache_variable_is_no_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collision this replaced: HA_GITOPS_CACHE_DIR meant the crm cache and was also `cache_dir`."""
    config = tmp_path / "agent.toml"
    config.write_text('repo_url = "file:///srv/repo"\ncache_dir = "/var/lib/ha-gitops/repo"\n')
    monkeypatch.setenv(CRM_CACHE_ENV, str(tmp_path / "crm"))
    assert load_settings(config).cache_dir == Path("/var/lib/ha-gitops/repo")
    monkeypatch.setenv("HA_GITOPS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert load_settings(config).cache_dir == tmp_path / "elsewhere"  # a setting: the environment wins
