"""`ha-gitops secret set|list|rm|recipients` with the real `age` tool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import main
from controller.secrets import age
from controller.secrets.folder import read_secrets

VALUE = "hunter2-Zq9"


def _folder(tmp: Path, *recipients: str) -> Path:
    folder = tmp / "c1"
    folder.mkdir()
    quoted = ", ".join(f'"{r}"' for r in recipients)
    (folder / "cluster.toml").write_text(f"[secrets]\nrecipients = [{quoted}]\n")
    return folder


@pytest.fixture()
def operator(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "op.key"
    return key, age.keygen(key)


def _cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args), input=stdin)
    return res.exit_code, res.stdout, res.stderr


def test_set_list_rm_never_show_the_value(tmp_path: Path, operator: tuple[Path, str]) -> None:
    key, recipient = operator
    folder = _folder(tmp_path, recipient)
    code, out, errs = _cli("secret", "set", "ipmi", "--dir", str(folder), "--identity", str(key),
                           stdin=VALUE + "\n")
    assert code == 0, errs
    text = (folder / "secrets.age").read_text()
    assert text.startswith("-----BEGIN AGE ENCRYPTED FILE-----") and VALUE not in text
    assert read_secrets(folder, key) == {"ipmi": VALUE}
    code, out, errs = _cli("secret", "set", "other", "--dir", str(folder), "--identity", str(key),
                           stdin="x")
    assert code == 0, errs
    code, out, _ = _cli("secret", "list", "--dir", str(folder), "--identity", str(key))
    assert code == 0 and "ipmi" in out and "other" in out and VALUE not in out
    code, _, errs = _cli("secret", "rm", "ipmi", "--dir", str(folder), "--identity", str(key))
    assert code == 0, errs
    assert read_secrets(folder, key) == {"other": "x"}
    code, _, errs = _cli("secret", "rm", "ipmi", "--dir", str(folder), "--identity", str(key))
    assert code == 2 and "no secret named 'ipmi'" in errs


def test_recipients_reencrypts_to_the_current_list(tmp_path: Path, operator: tuple[Path, str]) -> None:
    key, recipient = operator
    node_key = tmp_path / "node.key"
    node = age.keygen(node_key)
    folder = _folder(tmp_path, recipient)
    assert _cli("secret", "set", "ipmi", "--dir", str(folder), "--identity", str(key), stdin=VALUE)[0] == 0
    code, _, errs = _cli("secret", "list", "--dir", str(folder), "--identity", str(node_key))
    assert code == 2 and "not one of its recipients" in errs and VALUE not in errs
    (folder / "cluster.toml").write_text(f'[secrets]\nrecipients = ["{recipient}", "{node}"]\n')
    code, _, errs = _cli("secret", "recipients", "--dir", str(folder), "--identity", str(key))
    assert code == 0, errs
    assert read_secrets(folder, node_key) == {"ipmi": VALUE}


def test_the_value_is_never_in_argv(tmp_path: Path, operator: tuple[Path, str]) -> None:
    """The value goes to age on stdin: the command line of every process run holds no value."""
    key, recipient = operator
    folder = _folder(tmp_path, recipient)
    seen: list[list[str]] = []
    real = subprocess.run

    def spy(argv: list[str], *a: object, **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(list(argv))
        return real(argv, *a, **kw)  # type: ignore[call-overload,no-any-return]

    mp = pytest.MonkeyPatch()
    mp.setattr(subprocess, "run", spy)
    try:
        code = _cli("secret", "set", "ipmi", "--dir", str(folder), "--identity", str(key), stdin=VALUE)[0]
    finally:
        mp.undo()
    assert code == 0
    assert seen and all(VALUE not in " ".join(argv) for argv in seen)


def test_no_recipients_is_a_clear_error(tmp_path: Path, operator: tuple[Path, str]) -> None:
    key, _ = operator
    folder = _folder(tmp_path)
    code, _, errs = _cli("secret", "set", "ipmi", "--dir", str(folder), "--identity", str(key), stdin=VALUE)
    assert code == 2 and "[secrets] recipients is empty" in errs


def test_validate_checks_references_with_an_identity(tmp_path: Path, operator: tuple[Path, str]) -> None:
    from tests.secrets.secretstestlib import folder as desired_folder

    key, recipient = operator
    d = desired_folder(tmp_path, ref="@secret:missing")
    from controller.secrets.folder import write_secrets

    write_secrets(d, {"pw": VALUE}, [recipient])
    base = ["validate", str(d), "--no-agents", "--no-corosync-test"]
    code, out, _ = _cli(*base)
    assert code == 0, out  # no identity: references are not checked
    code, out, _ = _cli(*base, "--identity", str(key))
    assert code == 2 and "unknown secret 'missing'" in out and VALUE not in out
