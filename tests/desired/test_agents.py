"""A resource or fence agent that does not exist is an error naming the resource, the agent and the
line; one that cannot be checked here is a warning saying why. The rule (check_agents) is tested
with a fake catalog; the real catalog (crm_resource) is tested on this machine's Pacemaker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

import pytest
from lxml import etree

from controller.cluster.agents import PacemakerAgents
from controller.cluster.runner import ToolRunner
from controller.command import Result
from controller.desired.agents import check_agents
from controller.desired.substitute import SANDBOX_SUBSTITUTIONS, Substitution, substitute

CONFIG = b"""<configuration><crm_config/><nodes/><resources>
  <primitive id="ip" class="ocf" provider="heartbeat" type="IPaddr2"/>
  <primitive id="typo" class="ocf" provider="heartbeat" type="NoSuchAgent"/>
  <primitive id="fence" class="stonith" type="fence_nope"/>
  <primitive id="svc" class="systemd" type="kamailio"/>
  <template id="tmpl" class="ocf" provider="heartbeat" type="NoSuchAgent"/>
  <primitive id="from-tmpl" template="tmpl"/>
  <clone id="c"><primitive id="in-clone" class="ocf" provider="heartbeat" type="NoSuchAgent"/></clone>
</resources><constraints/></configuration>"""
LINES = {"ip": 2, "typo": 3, "fence": 4, "svc": 5, "tmpl": 6, "from-tmpl": 7, "in-clone": 8}
FILE = "desired/c/cib.xml"


class FakeCatalog:
    def __init__(self, present: set[str], unknown: Mapping[str, str] | None = None) -> None:
        self.present, self.unknown = present, dict(unknown or {})
        self.asked: list[str] = []

    def _name(self, standard: str, provider: str | None, type: str) -> str:
        return ":".join(p for p in (standard, provider, type) if p)

    def exists(self, standard: str, provider: str | None, type: str) -> bool | None:
        name = self._name(standard, provider, type)
        self.asked.append(name)
        if name in self.unknown:
            return None
        return name in self.present

    def why_unknown(self, standard: str, provider: str | None, type: str) -> str:
        return self.unknown[self._name(standard, provider, type)]


def config() -> etree._Element:
    return etree.fromstring(CONFIG)


def test_missing_agents_are_errors_naming_resource_agent_and_line() -> None:
    catalog = FakeCatalog({"ocf:heartbeat:IPaddr2"}, {"systemd:kamailio": "systemd is not PID 1 here"})
    findings = {f.element: f for f in check_agents(config(), catalog, file=FILE, id_lines=LINES)}
    assert set(findings) == {"typo", "fence", "svc", "from-tmpl", "in-clone"}
    typo = findings["typo"]
    assert typo.severity == "error" and typo.file == FILE and typo.line == 3
    assert "'typo'" in typo.message and "ocf:heartbeat:NoSuchAgent" in typo.message
    fence = findings["fence"]
    assert fence.severity == "error" and "fence agent stonith:fence_nope" in fence.message and fence.line == 4
    # a template's agent is the primitive's agent
    assert findings["from-tmpl"].severity == "error" and "NoSuchAgent" in findings["from-tmpl"].message
    assert findings["in-clone"].line == 8


def test_an_agent_that_cannot_be_checked_is_a_warning_with_the_reason() -> None:
    catalog = FakeCatalog({"ocf:heartbeat:IPaddr2"}, {"systemd:kamailio": "systemd is not PID 1 here"})
    [svc] = [f for f in check_agents(config(), catalog, file=FILE, id_lines=LINES) if f.element == "svc"]
    assert svc.severity == "warning" and svc.line == 5
    assert "systemd:kamailio could not be checked here: systemd is not PID 1 here" in svc.message


def test_substituted_agents_are_checked_and_named_with_the_original() -> None:
    cfg, done = substitute(config(), [Substitution(match_class="systemd", to_type="NoSuchDummy",
                                                   reason="sandbox nodes have no systemd")])
    catalog = FakeCatalog({"ocf:heartbeat:IPaddr2", "ocf:pacemaker:Dummy"})
    [svc] = [f for f in check_agents(cfg, catalog, file=FILE, id_lines=LINES, substituted=done)
             if f.element == "svc"]
    assert svc.severity == "error" and "ocf:pacemaker:NoSuchDummy" in svc.message
    assert "in place of systemd:kamailio" in svc.message and "sandbox nodes have no systemd" in svc.message
    cfg, done = substitute(config(), SANDBOX_SUBSTITUTIONS)
    assert not [f for f in check_agents(cfg, catalog, file=FILE, id_lines=LINES, substituted=done)
                if f.element == "svc"]


def test_incomplete_primitives_are_left_to_the_schema_check() -> None:
    cfg = etree.fromstring(b"<configuration><resources><primitive id='x' class='ocf' type='Dummy'/>"
                           b"</resources></configuration>")
    catalog = FakeCatalog(set())
    assert check_agents(cfg, catalog, file=FILE, id_lines={}) == [] and catalog.asked == []


# ---- the real catalog: Pacemaker 2.1.5's crm_resource on this machine

needs_pacemaker = pytest.mark.skipif(shutil.which("crm_resource") is None,
                                     reason="Pacemaker is not installed")


@needs_pacemaker
def test_real_catalog_knows_installed_and_missing_agents() -> None:
    agents = PacemakerAgents()
    assert agents.exists("ocf", "heartbeat", "IPaddr2") is True
    assert agents.exists("ocf", "pacemaker", "Dummy") is True
    assert agents.exists("ocf", "heartbeat", "NoSuchAgent") is False
    assert agents.exists("ocf", "nosuchprovider", "IPaddr2") is False
    assert agents.exists("stonith", None, "external/ssh") is True
    assert agents.exists("stonith", None, "fence_nope") is False


@needs_pacemaker
@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here: it can answer")
def test_real_catalog_cannot_check_systemd_without_systemd_and_says_why() -> None:
    agents = PacemakerAgents()
    assert agents.exists("systemd", None, "kamailio") is None
    why = agents.why_unknown("systemd", None, "kamailio")
    assert "systemd is not PID 1" in why and "--list-standards" in why


class CountingRunner(ToolRunner):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None,
            check: bool = True, ok_codes: Sequence[int] = (0,),
            env: Mapping[str, str] | None = None) -> Result:
        self.calls.append(list(argv))
        return super().run(argv, timeout=timeout, input=input, check=check, ok_codes=ok_codes, env=env)


@needs_pacemaker
def test_real_catalog_keeps_present_agents_and_asks_again_for_missing_ones() -> None:
    runner = CountingRunner()
    agents = PacemakerAgents(runner)
    for _ in range(3):
        assert agents.exists("ocf", "heartbeat", "IPaddr2") is True
        assert agents.exists("ocf", "heartbeat", "NoSuchAgent") is False
    metadata = [c for c in runner.calls if "--show-metadata" in c]
    assert sum("ocf:heartbeat:IPaddr2" in c for c in metadata) == 1
    assert sum("ocf:heartbeat:NoSuchAgent" in c for c in metadata) == 3  # installing it is seen at once


def test_real_catalog_without_pacemaker_cannot_tell_and_says_why() -> None:
    agents = PacemakerAgents(ToolRunner(prefix=["/nonexistent/hgv-tool"]))
    assert agents.exists("ocf", "heartbeat", "IPaddr2") is None
    assert "crm_resource" in agents.why_unknown("ocf", "heartbeat", "IPaddr2")
