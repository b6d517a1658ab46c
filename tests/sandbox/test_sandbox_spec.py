"""What the sandbox derives without running anything: the agent's restart policy from its systemd unit, the
power switch's address on the sandbox network."""

from __future__ import annotations

import signal
from pathlib import Path

from controller.sandbox.node_init import restart_wanted
from controller.sandbox.supervisor import (
    AGENT_RESTART_DEFAULT,
    AGENT_UNITS,
    agent_restart_policy,
    unit_restart,
)
from controller.sandbox.topology import build_spec, power_switch_address
from tests.conftest import REFERENCE


def test_agents_restart_as_the_shipped_unit_says() -> None:
    shipped = unit_restart(AGENT_UNITS[0].read_text())
    assert shipped == {"restart": "on-failure", "restart_sec": 5.0}
    assert agent_restart_policy() == shipped == AGENT_RESTART_DEFAULT  # the fallback is the unit
    assert unit_restart("[Service]\nRestart=always\nRestartSec=1min 30s\n") == {"restart": "always",
                                                                               "restart_sec": 90.0}
    # systemd's on-failure: a crash or an unclean signal restarts; exit 0 or SIGTERM (a stop) does not.
    assert restart_wanted("on-failure", -signal.SIGKILL) and restart_wanted("on-failure", 1)
    assert not restart_wanted("on-failure", 0) and not restart_wanted("on-failure", -signal.SIGTERM)
    assert not restart_wanted("no", -signal.SIGKILL)


def test_power_switch_takes_an_address_nothing_in_the_cluster_uses() -> None:
    spec = build_spec(REFERENCE)
    assert spec.power_switch == "10.220.1.254" and spec.fencing_network == "cluster"
    taken = "ring0_addr: 10.220.1.254\nparams ip=10.220.1.253\n"
    assert power_switch_address("10.220.1.21", 24, [taken]) == "10.220.1.252"


def test_sandbox_agents_get_the_http_listener_and_a_private_secret_file(tmp_path: Path) -> None:
    import stat

    from controller.sandbox.layout import Layout
    from controller.sandbox.supervisor import write_agent_config
    from controller.sandbox.topology import SandboxAgents
    from controller.settings import load_settings

    layout = Layout(tmp_path)
    spec = build_spec(REFERENCE).model_copy(update={"agents": SandboxAgents(
        repo_url="/srv/repo", http_listen="0.0.0.0:9811", webhook_secret="s3", watch_source=False)})
    node = spec.nodes[0]
    etc = layout.node_dir(node.name) / "etc-ha-gitops"
    etc.mkdir(parents=True)
    write_agent_config(layout, spec, node)
    secret = etc / "webhook.secret"
    assert secret.read_text() == "s3\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    settings = load_settings(etc / "agent.toml")
    assert settings.http_address == ("0.0.0.0", 9811) and not settings.watch_source
    assert settings.webhook_secret_file == Path("/etc/ha-gitops/webhook.secret")  # the node's view of it

    write_agent_config(layout, spec.model_copy(update={"agents": SandboxAgents(repo_url="/srv/repo")}), node)
    assert not secret.exists()
    settings = load_settings(etc / "agent.toml")
    assert settings.webhook_secret_file is None and settings.watch_source
