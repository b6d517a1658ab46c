"""cluster.toml disruption policy: maintenance windows, protect, max_restarts, corosync restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.corosync.diff import ChangeClass
from controller.desired.policy import ClusterPolicy, parse_policy
from controller.desired.policy_sections import MaintenanceWindow
from controller.disruption import check_corosync_restart, check_disruption, in_maintenance_window
from controller.errors import InputError
from controller.impact import Impact, ResourceImpact

FULL = """
[[maintenance_window]]
name = "nightly"
cron = "0 2 * * *"
duration = "2h"
timezone = "UTC"

[disruption]
max_restarts = 1
protect = ["PROXY01"]
allow_cluster_restart = false

[settle]
timeout = "120s"

[rollout]
verify_timeout = "45s"
rejoin_timeout = "3m"
takeover_timeout = "10s"
"""


def window(cron: str, duration: str = "2h", tz: str = "UTC", name: str = "w") -> MaintenanceWindow:
    return MaintenanceWindow(name=name, cron=cron, duration=duration, timezone=tz)  # type: ignore[arg-type]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *,
       tz: str = "UTC") -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz))


def test_full_example_parses() -> None:
    p = parse_policy(FULL)
    assert p.maintenance_window == [window("0 2 * * *", name="nightly")]
    assert p.maintenance_window[0].duration == timedelta(hours=2)
    assert (p.disruption.max_restarts, p.disruption.protect, p.disruption.allow_cluster_restart) == (
        1, ["PROXY01"], False)
    assert p.settle.timeout == timedelta(seconds=120)
    assert p.rollout.verify_timeout == timedelta(seconds=45)
    assert p.rollout.rejoin_timeout == timedelta(minutes=3)
    assert p.rollout.takeover_timeout == timedelta(seconds=10)


def test_defaults_without_sections() -> None:
    p = parse_policy("")
    assert p.maintenance_window == [] and p.disruption.protect == []
    assert p.disruption.max_restarts is None and not p.disruption.allow_cluster_restart
    assert p.settle.timeout == timedelta(seconds=120)
    assert p.rollout.verify_timeout == timedelta(seconds=30)
    assert p.rollout.rejoin_timeout == timedelta(seconds=90)
    assert p.rollout.takeover_timeout == timedelta(seconds=30)


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", timedelta(hours=2)), ("90m", timedelta(minutes=90)), ("PT1H30M", timedelta(minutes=90)),
    ("7200", timedelta(hours=2)), (7200, timedelta(hours=2)), ("500ms", timedelta(milliseconds=500)),
])
def test_duration_forms(text: str | int, expected: timedelta) -> None:
    assert window("0 2 * * *", duration=text).duration == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("toml", "message", "line"), [
    ('[disruption]\nmax_restart = 1', "unknown key 'disruption.max_restart'", 2),
    ('[settle]\ntimeout = "soon"', "settle.timeout: Value error, not a duration", 2),
    ('[rollout]\nverify_timeout = "0s"', "rollout.verify_timeout: Value error, duration must be positive", 2),
    ('[rollout]\nrejoin = "90s"', "unknown key 'rollout.rejoin'", 2),
    ('[disruption]\nmax_restarts = -1', "greater than or equal to 0", 2),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 * *"\nduration = "1h"', "must have 5 fields", 3),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 1 * 1"\nduration = "1h"', "restricts both", 3),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 * * 8"\nduration = "1h"', "bad day of week", 3),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 * * *"\nduration = "0s"', "must be positive", 4),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 * * *"\nduration = "1h"\ntimezone = "Mars/Olympus"',
     "unknown time zone", 5),
    ('[[maintenance_window]]\nname = "x"\ncron = "0 2 * * *"', "missing key 'maintenance_window[0].duration'",
     1),
])
def test_bad_policy_names_key_and_line(toml: str, message: str, line: int) -> None:
    with pytest.raises(InputError, match=r"cluster\.toml") as info:
        parse_policy(toml)
    assert message in str(info.value)
    assert info.value.line == line


@pytest.mark.parametrize(("now", "is_open"), [
    (at(2024, 5, 6, 1, 59, 59), False), (at(2024, 5, 6, 2, 0), True), (at(2024, 5, 6, 3, 59, 59), True),
    (at(2024, 5, 6, 4, 0), False), (at(2024, 5, 6, 12, 0), False),
    (at(2024, 5, 6, 4, 30, tz="Europe/Berlin"), True),  # 02:30 UTC
])
def test_nightly_window_utc(now: datetime, is_open: bool) -> None:
    w = window("0 2 * * *")
    assert (in_maintenance_window([w], now) == w) is is_open


@pytest.mark.parametrize(("utc_now", "is_open"), [
    (at(2024, 1, 15, 1, 30), True),    # winter: 02:30 in Berlin (UTC+1)
    (at(2024, 1, 15, 0, 30), False),
    (at(2024, 7, 15, 0, 30), True),    # summer: 02:30 in Berlin (UTC+2)
    (at(2024, 7, 15, 2, 30), False),
])
def test_window_in_a_named_zone(utc_now: datetime, is_open: bool) -> None:
    assert (in_maintenance_window([window("0 2 * * *", tz="Europe/Berlin")], utc_now) is not None) is is_open


def test_weekday_numbers_are_standard_cron() -> None:
    # APScheduler 3 counts 0 as Monday; cluster.toml means standard cron: 0 (and 7) is Sunday
    sunday, monday = at(2024, 1, 7, 2, 30), at(2024, 1, 8, 2, 30)
    for cron in ("0 2 * * 0", "0 2 * * 7", "0 2 * * sun"):
        assert in_maintenance_window([window(cron)], sunday) is not None, cron
        assert in_maintenance_window([window(cron)], monday) is None, cron
    weekdays = window("0 2 * * 1-5")
    assert in_maintenance_window([weekdays], monday) is not None
    assert in_maintenance_window([weekdays], sunday) is None
    weekend = window("0 2 * * 5-7")  # Friday to Sunday
    assert in_maintenance_window([weekend], sunday) is not None
    assert in_maintenance_window([weekend], at(2024, 1, 5, 2, 30)) is not None  # a Friday
    assert in_maintenance_window([weekend], monday) is None


def test_window_across_midnight_and_longer_than_its_period() -> None:
    late = window("0 23 * * *", duration="3h")
    assert in_maintenance_window([late], at(2024, 5, 7, 1, 59)) is not None
    assert in_maintenance_window([late], at(2024, 5, 7, 2, 0)) is None
    hourly_long = window("0 * * * *", duration="2h")
    assert all(in_maintenance_window([hourly_long], at(2024, 5, 6, h, 17)) for h in range(24))


def test_first_open_window_is_returned() -> None:
    a, b = window("0 2 * * *", name="nightly"), window("0 12 * * 3", name="wednesday-noon")
    assert in_maintenance_window([a, b], at(2024, 5, 8, 12, 30)) == b  # a Wednesday
    assert in_maintenance_window([a, b], at(2024, 5, 8, 2, 30)) == a
    assert in_maintenance_window([], at(2024, 5, 8, 2, 30)) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        in_maintenance_window([window("0 2 * * *")], datetime(2024, 5, 6, 2, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        check_disruption(Impact(), ClusterPolicy(), datetime(2024, 5, 6, 2, 30))


def ri(resource: str, action: str, parent: str | None = None, containers: list[str] | None = None,
       nodes: list[str] | None = None, reason: str | None = None, verb: str | None = None) -> ResourceImpact:
    return ResourceImpact(resource=resource, parent=parent,
                          containers=containers if containers is not None else ([parent] if parent else []),
                          action=action, pacemaker_action=verb or action,  # type: ignore[arg-type]
                          nodes=nodes or ["kamailio01"], reason=reason)


IP_CHANGE = Impact(resources=[
    ri("IP-HA-01", "restart", "PROXY01", reason="resource definition change"),
    ri("KAMAILIO01", "restart", "PROXY01", reason="required IP-HA-01 start")])
NOON, NIGHT = at(2024, 5, 6, 12, 0), at(2024, 5, 6, 2, 30)


def test_protected_group_refuses_restart_of_its_members_outside_a_window() -> None:
    policy = parse_policy(FULL.replace("max_restarts = 1\n", ""))
    v = check_disruption(IP_CHANGE, policy, NOON)
    assert [(x.rule, x.resource, x.action, x.reason) for x in v] == [
        ("protect", "IP-HA-01", "restart", "resource definition change"),
        ("protect", "KAMAILIO01", "restart", "required IP-HA-01 start")]
    assert str(v[0]) == ("restart IP-HA-01 (in PROXY01) on kamailio01 due to resource definition change: "
                         "PROXY01 is protected outside a maintenance window")
    assert check_disruption(IP_CHANGE, policy, NIGHT) == []


@pytest.mark.parametrize(("impact", "violated"), [
    (Impact(resources=[ri("KAMAILIO01", "stop", "PROXY01")]), True),
    (Impact(resources=[ri("IP-HA-01", "move", "PROXY01", nodes=["kamailio01", "kamailio02"])]), True),
    (Impact(resources=[ri("PROXY01", "demote")]), True),
    (Impact(resources=[ri("KAMAILIO01", "start", "PROXY01")]), False),
    (Impact(resources=[ri("IP-HA-01", "reload", "PROXY01")]), False),
    (Impact(resources=[ri("OTHER", "restart")]), False),
])
def test_protect_covers_disruptive_actions_only(impact: Impact, violated: bool) -> None:
    policy = parse_policy('[disruption]\nprotect = ["PROXY01"]')
    assert bool(check_disruption(impact, policy, NOON)) is violated


def test_protect_covers_clone_instances_and_nested_members() -> None:
    instance = Impact(resources=[ri("stonithssh:1", "restart", "fencing")])
    assert check_disruption(instance, parse_policy('[disruption]\nprotect = ["fencing"]'), NOON)
    assert check_disruption(instance, parse_policy('[disruption]\nprotect = ["stonithssh"]'), NOON)
    nested = Impact(resources=[ri("db:0", "stop", "grp", containers=["grp", "grp-clone"])])
    v = check_disruption(nested, parse_policy('[disruption]\nprotect = ["grp-clone"]'), NOON)
    assert [(x.rule, x.resource) for x in v] == [("protect", "db:0")]


def test_max_restarts_counts_restarts_moves_and_stops_outside_a_window() -> None:
    policy = parse_policy('[[maintenance_window]]\nname = "n"\ncron = "0 2 * * *"\nduration = "2h"\n'
                          '[disruption]\nmax_restarts = 1')
    v = check_disruption(IP_CHANGE, policy, NOON)
    assert [(x.rule, x.resource, x.action) for x in v] == [
        ("max_restarts", "IP-HA-01", "restart"), ("max_restarts", "KAMAILIO01", "restart")]
    assert "2 restarts/moves/stops predicted, at most 1 allowed" in v[0].message
    assert check_disruption(IP_CHANGE, policy, NIGHT) == []
    one = Impact(resources=[IP_CHANGE.resources[0], ri("Y", "start"), ri("Z", "reload")])
    assert check_disruption(one, policy, NOON) == []
    # A stop (what deleting a running resource does) disrupts as much as a restart: it counts.
    stopped = Impact(resources=[IP_CHANGE.resources[0], ri("X", "stop")])
    assert [x.resource for x in check_disruption(stopped, policy, NOON)] == ["IP-HA-01", "X"]
    moved = Impact(resources=[IP_CHANGE.resources[0], ri("Y", "move", nodes=["a", "b"], verb="migrate")])
    assert [x.resource for x in check_disruption(moved, policy, NOON)] == ["IP-HA-01", "Y"]
    zero = parse_policy("[disruption]\nmax_restarts = 0")
    assert check_disruption(Impact(resources=[ri("Z", "reload")]), zero, NOON) == []
    assert len(check_disruption(Impact(resources=[ri("Z", "restart")]), zero, NOON)) == 1


def test_no_rules_no_violations() -> None:
    assert check_disruption(IP_CHANGE, ClusterPolicy(), NOON) == []


def test_corosync_cluster_restart_gate() -> None:
    window_text = '[[maintenance_window]]\nname = "nightly"\ncron = "0 2 * * *"\nduration = "2h"\n'
    refused = parse_policy(window_text)
    allowed = parse_policy(window_text + "[disruption]\nallow_cluster_restart = true")
    classes: tuple[ChangeClass | None, ...] = (None, "reload", "rolling-restart")
    for cls in classes:
        assert check_corosync_restart(cls, refused, NOON) is None
    v = check_corosync_restart("cluster-restart", refused, NIGHT)
    assert v is not None and v.rule == "allow_cluster_restart" and v.action == "cluster-restart"
    v = check_corosync_restart("cluster-restart", allowed, NOON)
    assert v is not None and v.rule == "maintenance_window" and "(nightly)" in v.message
    assert check_corosync_restart("cluster-restart", allowed, NIGHT) is None
    no_windows = parse_policy("[disruption]\nallow_cluster_restart = true")
    v = check_corosync_restart("cluster-restart", no_windows, NIGHT)
    assert v is not None and v.rule == "maintenance_window" and "none defined" in v.message


def test_markdown_escapes_cells_and_marks_disruption() -> None:
    impact = Impact(resources=[ri("A", "reload", reason="x|y"),
                               ri("B", "move", "G", nodes=["n1", "n2"], verb="migrate")])
    md = impact.markdown().splitlines()
    assert md[2] == "| Action | Resource | In | Node(s) | Reason |"
    assert md[4] == "| reload | `A` |  | kamailio01 | x\\|y |"
    assert md[5] == "| **move** (migrate) | `B` | `G` | n1 → n2 |  |"
    assert Impact().markdown() == "**Predicted impact:** no resource actions."


def test_now_in_other_zone_compares_as_instant() -> None:
    w = window("0 2 * * *")
    assert in_maintenance_window([w], datetime(2024, 5, 6, 2, 30, tzinfo=UTC).astimezone(
        ZoneInfo("America/New_York"))) == w


def test_enforce_refuses_with_the_prediction_in_error_and_audit_detail() -> None:
    from controller.disruption import DisruptionRefused, enforce

    policy = parse_policy(FULL)
    with pytest.raises(DisruptionRefused) as info:
        enforce(IP_CHANGE, policy, NOON, corosync_change="cluster-restart")
    text = str(info.value)
    assert "[protect] restart IP-HA-01 (in PROXY01)" in text
    assert "[max_restarts]" in text and "[allow_cluster_restart]" in text
    assert "Predicted impact:\n  restart  IP-HA-01 (in PROXY01)" in text
    detail = info.value.audit_detail()
    assert [v["rule"] for v in detail["violations"]] == [
        "protect", "protect", "max_restarts", "max_restarts", "allow_cluster_restart"]
    assert detail["impact"]["resources"][0]["resource"] == "IP-HA-01"
    enforce(IP_CHANGE, policy, NIGHT, corosync_change="rolling-restart")  # inside the window: allowed
    enforce(None, policy, NOON, corosync_change="reload")


def test_max_restarts_zero_refuses_the_stop_of_a_deleted_resource() -> None:
    zero = parse_policy("[disruption]\nmax_restarts = 0")
    v = check_disruption(Impact(resources=[ri("Z", "stop")]), zero, NOON)
    assert [(x.rule, x.resource, x.action) for x in v] == [("max_restarts", "Z", "stop")]


def test_max_deletions_counts_removed_resources_outside_a_window() -> None:
    from controller.cib.render import ObjectChange

    policy = parse_policy('[[maintenance_window]]\nname = "n"\ncron = "0 2 * * *"\nduration = "2h"\n'
                          "[disruption]\nmax_deletions = 1")
    gone = [ObjectChange(kind="resource", id=i, action="removed") for i in ("A", "B")]
    v = check_disruption(Impact(), policy, NOON, changes=gone)
    assert [(x.rule, x.action) for x in v] == [("max_deletions", "delete")]
    assert "2 resource(s) deleted (A, B), at most 1 allowed" in v[0].message
    assert check_disruption(Impact(), policy, NOON, changes=gone[:1]) == []
    assert check_disruption(Impact(), policy, NIGHT, changes=gone) == []


def test_predicted_fencing_is_refused_unless_allowed_or_in_a_window() -> None:
    from controller.impact import NodeAction

    fence = Impact(node_actions=[NodeAction(task="reboot", node="kamailio02",
                                            reason="KAMAILIO01 stop failed")])
    policy = parse_policy('[[maintenance_window]]\nname = "n"\ncron = "0 2 * * *"\nduration = "2h"\n')
    v = check_disruption(fence, policy, NOON)
    assert [(x.rule, x.nodes) for x in v] == [("allow_fencing", ["kamailio02"])]
    assert "reboot kamailio02 predicted due to KAMAILIO01 stop failed" in v[0].message
    assert check_disruption(fence, policy, NIGHT) == []
    assert check_disruption(fence, parse_policy("[disruption]\nallow_fencing = true"), NOON) == []
    shutdown = Impact(node_actions=[NodeAction(task="shutdown", node="kamailio02")])
    assert check_disruption(shutdown, policy, NOON) == []
