"""The secrets file's plaintext format, names, references and fingerprints (pure, fast)."""

from __future__ import annotations

import pytest

from controller.desired.policy import parse_policy
from controller.errors import InputError
from controller.secrets.model import (
    SecretsError,
    fingerprint,
    parse_plaintext,
    parse_reference,
    render_plaintext,
    store_sign,
)

RECIPIENT = "age1ld9jawawdfnpcny3ezga2rek4newqls8zwrvjc5pfa85zqltrvasgx7utn"


def test_plaintext_round_trips_any_string() -> None:
    secrets = {"ipmi": 'p"a\\ss\nw\u00f6rd', "b.c-d_1": " spaced "}
    assert parse_plaintext(render_plaintext(secrets)) == secrets


@pytest.mark.parametrize("text", ['{"a": 1}', '["a"]', '{"-bad": "x"}', "{not json"])
def test_bad_plaintext_is_refused_without_quoting_the_content(text: str) -> None:
    with pytest.raises(SecretsError) as exc:
        parse_plaintext(text.replace("{", '{"zz": "hunter2", ', 1) if text.startswith('{"') else text)
    assert "hunter2" not in str(exc.value)
    assert "secrets.age" in str(exc.value)


def test_reference() -> None:
    assert parse_reference("@secret:ipmi") == "ipmi"
    assert parse_reference("plain") is None


def test_fingerprint_changes_with_value_cluster_and_name_and_hides_the_value() -> None:
    fp = fingerprint("c1", "ipmi", "hunter2")
    assert len(fp) == 16 and "hunter2" not in fp
    assert fp == fingerprint("c1", "ipmi", "hunter2")
    assert len({fp, fingerprint("c1", "ipmi", "hunter3"), fingerprint("c2", "ipmi", "hunter2"),
                fingerprint("c1", "other", "hunter2")}) == 4


def test_store_sign_is_cibsecrets_md5() -> None:
    # `printf %s hunter2 | md5sum`, what cibsecret writes into <param>.sign
    assert store_sign("hunter2") == "2ab96390c7dbe3439de74d0c9b0b1767"


def test_cluster_toml_secrets_recipients() -> None:
    policy = parse_policy(f'[secrets]\nrecipients = ["{RECIPIENT}", "{RECIPIENT}"]\n')
    assert policy.secrets.recipients == [RECIPIENT]


def test_cluster_toml_refuses_a_recipient_that_is_not_one() -> None:
    with pytest.raises(InputError, match="not an age recipient"):
        parse_policy('[secrets]\nrecipients = ["age1short"]\n')
