"""Agent settings: TOML file, HA_GITOPS_* environment overrides, errors naming the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.errors import InputError
from controller.settings import AgentSettings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "agent.toml.example"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HA_GITOPS_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_toml_values_and_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, 'repo_url = "/srv/git/c.git"\npath = "./clusters//prod/"\n'
                                      'poll_interval = 15\nservice_command = "sudo -n systemctl"\n'))
    assert s.repo_url == "/srv/git/c.git"
    assert s.path == "clusters/prod"
    assert s.poll_interval == 15.0
    assert s.branch == "main"
    assert s.drift_mode == "correct"
    assert s.audit_url == "sqlite:////var/lib/ha-gitops/audit.db"
    assert s.cache_dir == Path("/var/lib/ha-gitops/repo")
    assert s.service_command == ["sudo", "-n", "systemctl"]
    assert s.node_name  # the host name
    assert not s.verify_signatures and not s.enforce_signatures


def test_env_overrides_file_and_overrides_beat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, 'repo_url = "/a"\nbranch = "file"\ndrift_mode = "report"\n')
    monkeypatch.setenv("HA_GITOPS_BRANCH", "from-env")
    monkeypatch.setenv("HA_GITOPS_AUDIT_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("HA_GITOPS_ALLOWED_SIGNERS", "8E1C80F4F81CDAF5FAA93E3B88B4949EBAB10D2B\n/etc/k.asc")
    monkeypatch.setenv("HA_GITOPS_SANDBOX_DIR", "/elsewhere")  # another component's variable: ignored
    s = load_settings(f)
    assert (s.branch, s.drift_mode, s.audit_url) == ("from-env", "report", "sqlite:////tmp/x.db")
    assert s.allowed_signers == ["8E1C80F4F81CDAF5FAA93E3B88B4949EBAB10D2B", "/etc/k.asc"]
    assert s.enforce_signatures
    assert load_settings(f, overrides={"branch": "cli"}).branch == "cli"
    assert isinstance(load_settings(f, overrides={"branch": "cli"}), AgentSettings)


def test_config_path_from_env_and_env_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, 'repo_url = "/from-file"\n')
    monkeypatch.setenv("HA_GITOPS_CONFIG", str(f))
    assert load_settings().repo_url == "/from-file"
    monkeypatch.setenv("HA_GITOPS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match=r"missing\.toml: cannot read"):
        load_settings()


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    f = write(tmp_path, 'repo_url = "/a"\n\npoll_intervall = 5\n')
    with pytest.raises(InputError) as exc:
        load_settings(f)
    assert exc.value.file == str(f)
    assert exc.value.element == "poll_intervall"
    assert exc.value.line == 3
    assert str(exc.value).startswith(f"{f}:3 (poll_intervall): unknown key 'poll_intervall'")


@pytest.mark.parametrize(("text", "key", "what"), [
    ('repo_url = "/a"\ndrift_mode = "fix"\n', "drift_mode", "'correct', 'report' or 'off'"),
    ('repo_url = "/a"\npoll_interval = 0\n', "poll_interval", "greater than 0"),
    ('repo_url = "/a"\npath = "../etc"\n', "path", "'..'"),
    ('repo_url = "/a"\nbranch = "a..b"\n', "branch", "not a valid branch name"),
    ('repo_url = "/a"\nallowed_signers = ["alice"]\n', "allowed_signers", "neither a GPG fingerprint"),
    ('repo_url = ""\n', "repo_url", "must not be empty"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, what: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_settings(f)
    assert exc.value.element == key
    assert exc.value.file == str(f)
    assert what in str(exc.value)


def test_require_signed_needs_signers_and_env_error_names_variable(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="require_signed = true needs allowed_signers"):
        load_settings(write(tmp_path, 'repo_url = "/a"\nrequire_signed = true\n'))
    monkeypatch.setenv("HA_GITOPS_POLL_INTERVAL", "soon")
    with pytest.raises(InputError) as exc:
        load_settings(write(tmp_path, 'repo_url = "/a"\n'))
    assert exc.value.file == "environment HA_GITOPS_POLL_INTERVAL"
    assert exc.value.element == "poll_interval"


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_settings(write(tmp_path, 'repo_url = "/a"\nbranch = \n'))
    assert exc.value.line == 2


def _uncomment(text: str) -> str:
    out, in_list = [], False
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else None
        if body is not None and (in_list or re.match(r"[a-z_]+ = |\[\[[a-z_]+\]\]$", body)):
            in_list = (in_list or body.endswith("[")) and body.strip() != "]"
            out.append(body)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_example_documents_every_field_and_loads(tmp_path: Path) -> None:
    import tomllib

    text = EXAMPLE.read_text()
    full = _uncomment(text)
    assert set(tomllib.loads(full)) == set(AgentSettings.model_fields)
    s = load_settings(write(tmp_path, full))
    assert s.require_signed is True and len(s.allowed_signers) == 4
    assert s.substitute[0].match_class == "systemd" and s.substitute[0].to_type == "Dummy"
    assert load_settings(write(tmp_path, text)).repo_url.startswith("git@")  # as shipped: only repo_url
    for name, field in AgentSettings.model_fields.items():
        assert field.description and len(field.description) > 20, name


def test_repo_url_is_needed_only_by_the_verbs_that_follow_git(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, 'branch = "x"\n'))  # status, rollback, audit work without it
    assert s.repo_url is None
    with pytest.raises(InputError, match=r"repo_url is not set: `ha-gitops agent` follows a git repository"):
        s.require_repo("agent")
