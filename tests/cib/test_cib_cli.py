"""`ha-gitops cib diff`, run as the installed console script: exit codes, formats, bad inputs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lxml import etree

from controller.command import Result, run
from tests.cib.cibtestlib import SCHEDULER, cibadmin_patch, config_text, current, write

HA_GITOPS = str(Path(sys.executable).with_name("ha-gitops"))


def cli(*args: str) -> Result:
    return run([HA_GITOPS, "cib", "diff", *args], timeout=60, check=False)


def test_equal_files_exit_0_and_print_nothing() -> None:
    f = str(SCHEDULER / "order1.xml")
    r = cli(f, f)
    assert (r.returncode, r.stdout) == (0, "")


def test_different_files_exit_1_with_an_applicable_patchset(tmp_path: Path) -> None:
    old, new = current(SCHEDULER / "order1.xml"), current(SCHEDULER / "order2.xml")
    r = cli(str(write(old, tmp_path / "a.xml")), str(write(new, tmp_path / "b.xml")))
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith('<diff format="2">')
    assert "path=\"/cib/configuration/resources\" position=\"3\"" in r.stdout
    rc, err, patched = cibadmin_patch(old, r.stdout, tmp_path)
    assert rc == 0, err
    assert config_text(patched) == config_text(new)


def test_text_and_json_formats(tmp_path: Path) -> None:
    a, b = str(SCHEDULER / "order1.xml"), str(SCHEDULER / "order2.xml")
    text = cli(a, b, "--format", "text")
    assert text.returncode == 1
    assert "+ resource rsc4 (added)" in text.stdout
    assert "+ constraint order3 (added)" in text.stdout
    data = json.loads(cli(a, b, "--format", "json").stdout)
    assert {(d["kind"], d["id"], d["action"]) for d in data} == {
        ("resource", "rsc4", "added"), ("constraint", "order3", "added")}
    assert cli(a, a, "--format", "text").stdout == "no change\n"


def test_bare_configuration_files(tmp_path: Path) -> None:
    whole = current(SCHEDULER / "order1.xml")
    bare = tmp_path / "bare.xml"
    bare.write_bytes(b"<!-- only the configuration -->\n" + etree.tostring(whole.find("configuration")))
    r = cli(str(write(whole, tmp_path / "whole.xml")), str(bare), "--semantic")
    assert r.returncode == 0, r.stdout + r.stderr


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<cib>\n  <configuration>\n    <resources>\n  </configuration>\n</cib>\n")
    r = cli(str(SCHEDULER / "order1.xml"), str(bad))
    assert r.returncode == 2
    assert f"{bad}:4" in r.stderr and "malformed XML" in r.stderr


def test_wrong_root_and_missing_file(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text("<html/>")
    r = cli(str(SCHEDULER / "order1.xml"), str(other))
    assert r.returncode == 2 and "<cib> or <configuration>" in r.stderr
    r = cli(str(SCHEDULER / "order1.xml"), str(tmp_path / "missing.xml"))
    assert r.returncode == 2 and "missing.xml" in r.stderr


def test_xxe_is_refused_and_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xxe = tmp_path / "xxe.xml"
    xxe.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE cib [<!ENTITY s SYSTEM "file://{secret}">]>\n'
                   '<cib><configuration><crm_config><cluster_property_set id="x">'
                   '<nvpair id="n" name="n" value="&s;"/></cluster_property_set></crm_config>'
                   '</configuration></cib>\n')
    r = cli(str(SCHEDULER / "order1.xml"), str(xxe), "--format", "text")
    assert r.returncode == 2
    assert "DOCTYPE" in r.stderr and str(xxe) in r.stderr
    assert "TOP-SECRET" not in r.stdout + r.stderr


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    lol = tmp_path / "lol.xml"
    ents = ['<!ENTITY l0 "lol">']
    for i in range(1, 10):
        ents.append(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">')
    lol.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE cib [{"".join(ents)}]>\n<cib>&l9;</cib>\n')
    start = time.monotonic()
    r = cli(str(SCHEDULER / "order1.xml"), str(lol))
    assert r.returncode == 2 and "DOCTYPE" in r.stderr
    assert time.monotonic() - start < 10


def test_in_process_invocation_exits_normally() -> None:
    """The console script skips interpreter teardown; an in-process caller gets SystemExit."""
    from click.testing import CliRunner

    from controller.cli import main

    a, b = str(SCHEDULER / "order1.xml"), str(SCHEDULER / "order2.xml")
    result = CliRunner().invoke(main, ["cib", "diff", a, b])
    assert result.exit_code == 1, result.output
    assert result.output.startswith('<diff format="2">')
    assert CliRunner().invoke(main, ["cib", "diff", a, a]).exit_code == 0
