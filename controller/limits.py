"""Bounded work (pure): how big a desired file may be, and how long crmsh and crm_simulate may take.

Sizes: one table, DESIRED_FILE_LIMITS, checked before a file is read (README, "Desired state"). They
are set far above any real cluster, measured (bench/results/bounded_work.md, the corpus): the largest
real CIB of the corpus (Pacemaker's params-6.xml, 131 primitives) is 780 KB with its status and 518 KB
of <configuration>; a generated 2,000-primitive cluster is 303 KB of cib.crm, 1.2 MB of <configuration>
and 3.9 MB as a whole <cib> with its status (4,000: 607 KB, 2.4 MB, 7.8 MB). cib.crm's limit, 512 KB
(about 3,400 primitives), is set by crmsh: its conversion grows much faster than the text (2,000
primitives 33 s, 4,000 225 s on 2 busy cores), and at the limit it still fits its budget. A 50 MB
cib.crm is a mistake or an attack: it cost minutes and 564 MB.

Time: a budget that grows with the configuration (a base for the tool's start-up plus a cost per unit
of size), measured on a 2-core machine and given a wide margin, because the machine the agent runs on
is also running the cluster. A timeout's message names the budget and the size it was computed from.
"""

from __future__ import annotations

import math

from lxml import etree
from pydantic import BaseModel, ConfigDict

KB = 1024
MB = 1024 * KB

# file name -> the largest size in bytes ha-gitops reads. cib.xml may be a whole <cib> (status included).
DESIRED_FILE_LIMITS: dict[str, int] = {
    "cib.crm": 512 * KB,
    "cib.xml": 8 * MB,
    "corosync.conf": 1 * MB,
    "cluster.toml": 1 * MB,
    "secrets.age": 1 * MB,  # armored: a few hundred bytes per secret
}


def size_text(n: int) -> str:
    """1536 -> '1.5 KB', 52428800 -> '50 MB': what a message shows (the exact bytes go beside it)."""
    if n >= MB:
        return f"{n / MB:.4g} MB"
    if n >= KB:
        return f"{n / KB:.4g} KB"
    return f"{n} bytes"


def size_error(name: str, size: int) -> str | None:
    """The message for a desired file over its limit, None when it fits (or has no limit)."""
    limit = DESIRED_FILE_LIMITS.get(name)
    if limit is None or size <= limit:
        return None
    return (f"{name} is {size_text(size)} ({size} bytes), over the {size_text(limit)} limit for {name} "
            f"({limit} bytes): no real cluster needs a configuration this large")


class TimeBudget(BaseModel):
    """How long one tool run may take: base + per_unit x units, at most cap seconds."""

    model_config = ConfigDict(frozen=True)

    base: float
    per_unit: float
    units: int
    unit: str  # what units counts: "primitives", "KB of cib.crm"
    cap: float

    @property
    def seconds(self) -> float:
        # Rounded up to a tenth of a second: messages stay short, nothing rounds down to zero.
        return min(self.cap, math.ceil((self.base + self.per_unit * self.units) * 10) / 10)

    def describe(self) -> str:
        """'180s (30s + 0.05s x 3000 primitives)': the budget and what it was computed from."""
        if not self.per_unit:
            return f"{self.seconds:g}s (fixed; {self.units} {self.unit})"
        formula = f"{self.base:g}s + {self.per_unit:g}s x {self.units} {self.unit}"
        capped = f", capped at {self.cap:g}s" if self.base + self.per_unit * self.units > self.cap else ""
        return f"{self.seconds:g}s ({formula}{capped})"

    def timeout_message(self, what: str) -> str:
        return (f"{what} did not finish within its time budget of {self.describe()}; the configuration is "
                "too large to evaluate in time on this machine")


# Measured (bench/results/bounded_work.md, 2 cores shared with other work): crmsh 5.8 s for 1,000
# primitives (151 KB), 33 s for 2,000 (303 KB), 225 s for 4,000 (607 KB): budgets 136 s, 212 s, 364 s;
# at the 512 KB limit about 150 s expected, budget 316 s. crm_simulate (--run, both runs side by side)
# 0.7 s / 2.4 s / 11.6 s for 1,000 / 2,000 / 4,000 primitives: budgets 80 s / 130 s / 230 s per run.
# Together the caps (480 + 240 s, conversion then prediction) stay inside the agent's stuck-pass limit
# (controller/agent.py MAX_PASS, 900 s).
CRM_BASE, CRM_PER_KB, CRM_CAP = 60.0, 0.5, 480.0
SIMULATE_BASE, SIMULATE_PER_PRIMITIVE, SIMULATE_CAP = 30.0, 0.05, 240.0


def crm_budget(text: str) -> TimeBudget:
    """crmsh's `configure load replace` of cib.crm: its time grows with the text (per KB)."""
    size_kb = math.ceil(len(text.encode()) / KB)
    return TimeBudget(base=CRM_BASE, per_unit=CRM_PER_KB, units=size_kb, unit="KB of cib.crm",
                      cap=CRM_CAP)


def count_primitives(cib: etree._Element) -> int:
    """Primitives of a <cib> or <configuration>, templates' included: the scheduler's unit of work."""
    return sum(1 for el in cib.iter("primitive"))


def simulate_budget(cib: etree._Element) -> TimeBudget:
    """One crm_simulate run on cib: the scheduler's time grows with the resources it places."""
    return TimeBudget(base=SIMULATE_BASE, per_unit=SIMULATE_PER_PRIMITIVE,
                      units=count_primitives(cib), unit="primitives", cap=SIMULATE_CAP)
