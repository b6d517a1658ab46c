"""`sandbox up --agent-config FILE`: the user's settings fragment merged into every sandbox agent's
agent.toml (no sandbox started: the file the nodes get, loaded as the agent loads it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import InputError
from controller.sandbox.agent_config import merge, parse_fragment
from controller.sandbox.layout import Layout
from controller.sandbox.supervisor import agent_toml
from controller.sandbox.topology import SandboxAgents, build_spec
from controller.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
FRAGMENT = '''
drift_mode = "report"
poll_interval = 7.5

[[notify]]
name = "ops"
url = "json://10.220.0.1:8787/hook"
events = ["drift-detected", "verify:failure"]

[[substitute]]
match_class = "lsb"
match_type = "*"
to_class = "ocf"
to_provider = "pacemaker"
to_type = "Dummy"
reason = "no lsb scripts in the rehearsal"
'''


def _node_toml(tmp_path: Path, fragment: str) -> Path:
    spec = build_spec(REPO / "desired" / "kamailio")
    spec = spec.model_copy(update={"agents": SandboxAgents(repo_url="file:///srv/repo", path="clusters/x",
                                                            agent_config=fragment,
                                                            agent_config_source="prod.toml")})
    out = tmp_path / "agent.toml"
    out.write_text(agent_toml(spec, spec.nodes[1], Layout(tmp_path / "sb")))
    return out


def test_fragment_keys_reach_every_node_and_the_sandbox_keys_stay(tmp_path: Path) -> None:
    base = load_settings(_node_toml(tmp_path, ""))
    merged = load_settings(_node_toml(tmp_path, FRAGMENT))
    assert (merged.drift_mode, merged.poll_interval) == ("report", 7.5)
    assert [t.name for t in merged.notify] == ["ops"]
    assert merged.notify[0].events == ["drift-detected", "verify:failure"]
    # The sandbox's own: the node, what it follows, how it restarts the stack; its substitutions first.
    for key in ("node_name", "repo_url", "path", "cache_dir", "service_command", "audit_url"):
        assert getattr(merged, key) == getattr(base, key), key
    assert merged.substitute[:len(base.substitute)] == base.substitute
    assert merged.substitute[-1].match_class == "lsb"


@pytest.mark.parametrize("key", ["node_name", "repo_url", "service_command"])
def test_a_sandbox_key_in_the_fragment_is_refused_by_name(key: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_fragment(f'{key} = "x"\n', "prod.toml")
    text = str(exc.value)
    assert text.startswith("prod.toml") and key in text and "set by the sandbox" in text


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(InputError, match=r"prod\.toml.*invalid TOML"):
        merge('repo_url = "x"\n', "drift_mode = \n", source="prod.toml")


def test_a_bad_value_is_reported_against_the_fragment_before_any_node_starts(tmp_path: Path) -> None:
    from controller.sandbox.manager import _check_agent_config

    spec = build_spec(REPO / "desired" / "kamailio")
    bad = spec.model_copy(update={"agents": SandboxAgents(
        repo_url="file:///srv/repo", agent_config='[[notify]]\nurl = "nosuchservice://tok3n-s3cret"\n',
        agent_config_source="prod.toml")})
    with pytest.raises(InputError) as exc:
        _check_agent_config(bad, Layout(tmp_path / "sb"))
    text = str(exc.value)
    assert text.startswith("prod.toml") and "notify[0]" in text and "tok3n-s3cret" not in text
