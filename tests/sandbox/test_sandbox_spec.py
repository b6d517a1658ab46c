"""What the sandbox derives without running anything: the agent's restart policy from its systemd unit, the
power switch's address on the sandbox network."""

from __future__ import annotations

import signal

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
