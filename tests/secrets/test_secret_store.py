"""This node's Pacemaker secrets store, in cibsecret's own layout (checked with cibsecret's rule)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from controller.cluster.secret_store import LocalSecretStore
from tests.secrets.secretstestlib import VALUE


def test_write_then_read_in_cibsecrets_layout(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "secrets")
    assert store.sign_of("d1", "passwd") is None
    store.write("d1", "passwd", VALUE)
    value_file = tmp_path / "secrets" / "d1" / "passwd"
    sign_file = tmp_path / "secrets" / "d1" / "passwd.sign"
    # what `cibsecret set` writes: echo "$value" > file; md5 of the value (no newline) > file.sign
    assert value_file.read_text() == VALUE + "\n"
    assert sign_file.read_text() == hashlib.md5(VALUE.encode()).hexdigest() + "\n"
    assert stat.S_IMODE(value_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(value_file.parent.stat().st_mode) == 0o700
    assert store.sign_of("d1", "passwd") == hashlib.md5(VALUE.encode()).hexdigest()


def test_a_value_edited_by_hand_no_longer_matches(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path)
    store.write("d1", "passwd", VALUE)
    (tmp_path / "d1" / "passwd").write_text("edited\n")
    assert store.sign_of("d1", "passwd") is None
    store.write("d1", "passwd", VALUE)
    assert store.sign_of("d1", "passwd") is not None
