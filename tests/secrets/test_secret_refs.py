"""`@secret:NAME` in the desired folder: `lrm://` in the effective configuration, fingerprints, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.desired.findings import DesiredStateError
from controller.desired.load import load_desired
from controller.desired.state import read_desired
from controller.secrets import age
from controller.secrets.folder import write_secrets
from controller.secrets.model import fingerprint
from tests.secrets.secretstestlib import VALUE, folder, load, no_crm


def test_a_reference_becomes_lrm_with_a_fingerprint(tmp_path: Path) -> None:
    state = load(folder(tmp_path))
    nv = state.configuration().find(".//nvpair[@name='passwd']")
    assert nv is not None and nv.get("value") == "lrm://"
    [p] = state.secret_params
    assert (p.resource, p.param, p.name) == ("d1", "passwd", "pw")
    assert p.fingerprint == fingerprint("kamailio", "pw", VALUE)  # corosync cluster_name
    assert VALUE not in state.configuration_xml.decode()
    assert VALUE not in state.model_dump_json() and VALUE not in repr(state)


def test_a_rotated_value_is_a_new_fingerprint_and_digest(tmp_path: Path) -> None:
    d = folder(tmp_path)
    one = load(d)
    (d / "secrets.age").write_text("-----BEGIN AGE ENCRYPTED FILE-----\n(rotated)\n")
    two = load(d, {"pw": "other"})
    assert one.secret_params[0].fingerprint != two.secret_params[0].fingerprint
    assert one.digest != two.digest and one.configuration_xml == two.configuration_xml


def test_not_decrypted_here_still_lrm_without_fingerprint(tmp_path: Path) -> None:
    state = read_desired(folder(tmp_path), convert_crm=no_crm)
    assert state.secret_params[0].fingerprint is None and not state.secrets_decrypted
    assert b'value="lrm://"' in state.configuration_xml


@pytest.mark.parametrize(("kw", "secrets", "message"), [
    ({}, {"other": "x"}, "unknown secret 'pw'"),
    ({"secrets_file": False}, None, "the folder has no secrets.age"),
    ({}, {"pw": "trailing "}, "starts or ends with whitespace"),
    ({"extra": '<primitive id="d2" class="ocf" provider="pacemaker" type="Dummy"><meta_attributes '
               'id="d2-m"><nvpair id="d2-x" name="x" value="@secret:pw"/></meta_attributes></primitive>'},
     None, "only in a primitive's instance attributes"),
])
def test_bad_references_are_refused_naming_the_parameter(
        tmp_path: Path, kw: dict[str, object], secrets: dict[str, str] | None, message: str) -> None:
    d = folder(tmp_path, **kw)  # type: ignore[arg-type]
    with pytest.raises(DesiredStateError) as exc:
        load(d, secrets)
    assert message in str(exc.value) and "cib.xml" in str(exc.value)
    assert "trailing" not in str(exc.value)


def test_a_folder_this_identity_cannot_decrypt_is_refused(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine.key", tmp_path / "other.key"
    age.keygen(mine)
    d = folder(tmp_path)
    write_secrets(d, {"pw": VALUE}, [age.keygen(other)])
    with pytest.raises(DesiredStateError) as exc:
        load_desired(d, identity=mine)
    assert "cannot decrypt" in str(exc.value) and "not one of its recipients" in str(exc.value)
    assert "secrets.age" in str(exc.value)
    state = load_desired(d, identity=other)
    assert state.secret_values == {"pw": VALUE} and state.secrets_decrypted


def test_crm_syntax_reference(tmp_path: Path) -> None:
    """cib.crm through crmsh: `params passwd="@secret:pw"` reaches the configuration as `lrm://`."""
    key = tmp_path / "k"
    d = folder(tmp_path, secrets_file=False)
    (d / "cib.xml").unlink()
    (d / "cib.crm").write_text('primitive d1 ocf:pacemaker:Dummy params passwd="@secret:pw"\n')
    write_secrets(d, {"pw": VALUE}, [age.keygen(key)])
    state = load_desired(d, identity=key)
    assert [(p.resource, p.param, p.name) for p in state.secret_params] == [("d1", "passwd", "pw")]
    assert b'value="lrm://"' in state.configuration_xml


def test_the_fingerprint_does_not_depend_on_where_the_folder_is(tmp_path: Path) -> None:
    """The agent reads a revision from work/<sha>, `plan --dir` from wherever the copy is: the same value
    must have the same fingerprint (and store digest) in both, or plan says `secrets-pending` where the
    agent applies."""
    import shutil

    d = folder(tmp_path)
    copy = tmp_path / "0123abcd-work-copy"
    shutil.copytree(d, copy)
    [a], [b] = load(d).secret_params, load(copy).secret_params
    assert a.fingerprint == b.fingerprint is not None
