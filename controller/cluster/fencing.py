"""The cluster's fencing history (stonith_admin --history), to name a fence seen during verify."""

from __future__ import annotations

from pydantic import BaseModel

from controller.cib.xml import parse_xml_bytes
from controller.cluster.runner import ToolRunner
from controller.errors import HaGitopsError, InputError


class FenceEvent(BaseModel):
    target: str
    action: str | None = None
    status: str | None = None  # success | failed | pending
    origin: str | None = None
    delegate: str | None = None
    completed: str | None = None
    client: str | None = None

    def key(self) -> tuple[str | None, ...]:
        return (self.target, self.action, self.status, self.origin, self.delegate, self.completed)

    def text(self) -> str:
        return (f"{self.action or 'fence'} of {self.target}"
                + (f" by {self.delegate}" if self.delegate else "")
                + (f" for {self.origin}" if self.origin else "")
                + (f": {self.status}" if self.status else "")
                + (f" at {self.completed}" if self.completed else ""))


def parse_fence_history(xml: str) -> list[FenceEvent]:
    root = parse_xml_bytes(xml.encode(), source="stonith_admin --history")
    return [FenceEvent(target=el.get("target") or "", action=el.get("action"), status=el.get("status"),
                       origin=el.get("origin"), delegate=el.get("delegate"), completed=el.get("completed"),
                       client=el.get("client"))
            for el in root.iter("fence_event")]


def fence_history(runner: ToolRunner) -> list[FenceEvent] | None:
    """Every fencing action the cluster remembers; None when it cannot be read (then nothing is blamed)."""
    r = runner.run(["stonith_admin", "--history", "*", "--output-as=xml"], timeout=30, check=False)
    if r.returncode != 0:
        return None
    try:
        return parse_fence_history(r.stdout)
    except (InputError, HaGitopsError):
        return None
