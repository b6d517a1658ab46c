"""cluster.toml sections for disruption control: maintenance windows, the disruption policy, settling,
and the limits of a corosync.conf rollout.

    [[maintenance_window]]
    name = "nightly"
    cron = "0 2 * * *"      # start times: standard 5-field cron
    duration = "2h"
    timezone = "UTC"

    [disruption]
    max_restarts = 1        # restarts/moves per change outside a window (absent: no limit)
    protect = ["PROXY01"]   # never stop/restart/move/demote these (or their members) outside a window
    allow_cluster_restart = false

    [settle]
    timeout = "120s"

    [rollout]                   # corosync.conf rollouts
    verify_timeout = "30s"      # after a reload, how long a node's runtime (cmap) may take to match
    rejoin_timeout = "90s"      # after a restart, how long a node may take to rejoin a quorate cluster
    takeover_timeout = "30s"    # a driver's step not taken this long: the next node takes it over

Cron expressions are evaluated with APScheduler 3's CronTrigger, which numbers weekdays from Monday
(0 = Monday) and ANDs day-of-month with day-of-week; standard cron numbers them from Sunday and ORs
the two. The weekday field is therefore rewritten to names before APScheduler sees it, and an
expression restricting both day fields is refused rather than silently meaning something else.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from controller.cib.durations import duration_ms

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _parse_duration(value: Any) -> Any:
    """"2h", "90m", "120s", "PT2H" or a bare number of seconds, like Pacemaker durations."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as \"2h\", \"30m\" or \"120s\"")
    ms = duration_ms(str(value))
    if ms is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. \"2h\", \"30m\", \"120s\")")
    if ms <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return timedelta(milliseconds=ms)


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


def _weekday_number(token: str, expr: str) -> int:
    """0-7 as written (both 0 and 7 are Sunday), names sun..sat as 0..6."""
    t = token.lower()
    if t in _DAY_NAMES:
        return _DAY_NAMES.index(t)
    if t.isdigit() and 0 <= int(t) <= 7:
        return int(t)
    raise ValueError(f"bad day of week {token!r} in cron {expr!r}")


def _standard_weekdays(field: str, expr: str) -> str:
    """A standard-cron day-of-week field rewritten as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        m = re.fullmatch(r"([^/-]+)(?:-([^/-]+))?(?:/(\d+))?", item)
        if m is None:
            raise ValueError(f"bad day of week {item!r} in cron {expr!r}")
        first, last, step = m.group(1), m.group(2), m.group(3)
        if first == "*":
            lo, hi = 0, 6
        else:
            lo = _weekday_number(first, expr)
            hi = _weekday_number(last, expr) if last else (6 if step else lo)
        if hi < lo or (step is not None and int(step) < 1):
            raise ValueError(f"bad day-of-week item {item!r} in cron {expr!r}")
        days.update(d % 7 for d in range(lo, hi + 1, int(step or 1)))
    return "*" if len(days) == 7 else ",".join(_DAY_NAMES[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: str) -> CronTrigger:
    """APScheduler trigger for a standard 5-field cron expression (see the module docstring)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} must have 5 fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(f"cron {expr!r} restricts both day of month and day of week; standard cron "
                         "would match either, APScheduler both: use two windows instead")
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_standard_weekdays(weekday, expr), timezone=timezone)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaintenanceWindow(_Strict):
    """Opens at each cron fire time and stays open for `duration`."""

    name: str = Field(min_length=1)
    cron: str
    duration: Duration
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as "
                             "\"Europe/Berlin\")") from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        cron_trigger(value, "UTC")  # syntax only; the zone does not change what parses
        return value

    def trigger(self) -> CronTrigger:
        return cron_trigger(self.cron, self.timezone)


class DisruptionPolicy(_Strict):
    max_restarts: int | None = Field(default=None, ge=0)  # restarts + moves + stops per change
    max_deletions: int | None = Field(default=None, ge=0)  # resources removed per change
    protect: list[str] = Field(default_factory=list)
    allow_fencing: bool = False  # a change predicted to fence a node: only in a window, or if true
    allow_cluster_restart: bool = False


class SettlePolicy(_Strict):
    timeout: Duration = timedelta(seconds=120)


class RolloutPolicy(_Strict):
    """Limits of a corosync.conf rollout step; past them the rollout fails and is rolled back."""

    verify_timeout: Duration = timedelta(seconds=30)
    rejoin_timeout: Duration = timedelta(seconds=90)
    # A driver's step (the reload, the cluster restart request, the health check) not taken this long
    # after the last rollout attribute changed is taken by the next node in the order (the one after it
    # waits twice as long); a node's own file write not taken this long abandons the rollout.
    takeover_timeout: Duration = timedelta(seconds=30)


class SecretsPolicy(BaseModel):
    """[secrets]: who secrets.age is encrypted to (controller/secrets/).

        [secrets]
        recipients = ["age1...node1", "age1...node2", "age1...operator"]  # every node's and the operators'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: list[str] = Field(default_factory=list)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        from controller.secrets.model import RECIPIENT_RE

        out = []
        for r in value:
            if not RECIPIENT_RE.fullmatch(r.strip()):
                raise ValueError(f"not an age recipient: {r[:24]!r} (age1..., ssh-ed25519 or ssh-rsa)")
            if r.strip() not in out:
                out.append(r.strip())
        return out
