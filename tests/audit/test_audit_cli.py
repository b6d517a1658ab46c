"""`ha-gitops audit log|show|verify`: output, masking and exit codes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, text

from controller.audit.store import AuditStore, _normalise_url
from controller.cli import main
from controller.command import run

SECRET = "hunter2-very-secret"
CONFIG = (f'<cib><configuration><resources><primitive id="f" class="stonith" type="fence_ipmilan">'
          f'<instance_attributes id="f-ia"><nvpair id="f-ia-password" name="password" value="{SECRET}"/>'
          f'<nvpair id="f-ia-ip" name="ip" value="10.0.0.9"/></instance_attributes></primitive>'
          f'</resources></configuration></cib>')


def _fill(url: str) -> None:
    with AuditStore(url) as s:
        s.append({"node": "node1", "kind": "apply", "outcome": "success", "summary": "fence password rotated",
                  "commit": {"sha": "abcdef0123456789abcdef0123456789abcdef01", "message": "rotate"},
                  "config_before": CONFIG.replace(SECRET, "old-secret-1"), "config_after": CONFIG,
                  "diff": f"f: password: old-secret-1 -> {SECRET}", "duration": 1.5,
                  "details": {"update-origin": "node1"}})
        s.append({"node": "node2", "kind": "error", "outcome": "failure",
                  "error": f"cibadmin --replace failed: password={SECRET} rejected"})
        s.append({"node": "node1", "kind": "drift-detected", "outcome": "success",
                  "summary": "manual change by root", "details": {"update-user": "root", "api_key": SECRET}})


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


def test_log_text_and_json_are_masked(db_url: str) -> None:
    _fill(db_url)
    res = invoke("audit", "log", "--db", db_url)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any("abcdef0123" in ln and "fence password rotated" in ln and "success" in ln for ln in lines)
    assert any("password=**** rejected" in ln for ln in lines)
    assert SECRET not in res.stdout

    res = invoke("audit", "log", "--db", db_url, "--format", "json", "--kind", "error", "--kind", "apply")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [(r["id"], r["kind"]) for r in rows] == [(2, "error"), (1, "apply")]
    assert rows[0]["summary"] == "cibadmin --replace failed: password=**** rejected"

    res = invoke("audit", "log", "--db", db_url, "--format", "json", "--limit", "1")
    assert [r["id"] for r in json.loads(res.stdout)] == [3]


def test_show_is_masked_in_text_and_json(db_url: str) -> None:
    _fill(db_url)
    res = invoke("audit", "show", "1", "--db", db_url)
    assert res.exit_code == 0
    assert "--- configuration after" in res.stdout and 'name="password" value="****"' in res.stdout
    assert 'value="10.0.0.9"' in res.stdout
    assert "f: password: **** -> ****" in res.stdout
    assert SECRET not in res.stdout and "old-secret-1" not in res.stdout

    res = invoke("audit", "show", "3", "--db", db_url, "--format", "json")
    doc = json.loads(res.stdout)
    assert doc["details"] == {"update-user": "root", "api_key": "****"}
    assert doc["id"] == 3 and len(doc["hash"]) == 64
    assert SECRET not in res.stdout
    # The store itself keeps the real value: a rollback needs it.
    with AuditStore(db_url) as s:
        assert s.get(1).config_after == CONFIG

    res = invoke("audit", "show", "42", "--db", db_url)
    assert res.exit_code == 2 and "no audit event 42" in res.stderr


def test_verify_exit_codes(db_url: str) -> None:
    _fill(db_url)
    res = invoke("audit", "verify", "--db", db_url)
    assert res.exit_code == 0 and res.stdout.startswith("ok: 3 events")

    engine = create_engine(_normalise_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET node = 'evil' WHERE id = 1"))
        conn.execute(text("DELETE FROM audit_events WHERE id = 2"))
    engine.dispose()
    res = invoke("audit", "verify", "--db", db_url)
    assert res.exit_code == 2
    assert "edited" in res.stdout and "event 1" in res.stdout and "event 2 is missing" in res.stdout
    res = invoke("audit", "verify", "--db", db_url, "--format", "json")
    assert res.exit_code == 2
    assert [(p["kind"], p["event_id"]) for p in json.loads(res.stdout)["problems"]] == [("edited", 1),
                                                                                         ("missing", 2)]


def test_entry_point_env_url_and_missing_db(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    _fill(url)
    exe = Path(sys.executable).parent / "ha-gitops"
    env = {"HA_GITOPS_AUDIT_URL": url, "COLUMNS": "200"}
    res = run([str(exe), "audit", "verify", "--format", "json"], env=env, timeout=60)
    assert json.loads(res.stdout)["checked"] == 3

    missing = {"HA_GITOPS_AUDIT_URL": f"sqlite:///{tmp_path}/nope/audit.db"}
    res = run([str(exe), "audit", "log"], env=missing, timeout=60, check=False)
    assert res.returncode == 2 and "no audit database" in res.stderr
    assert not (tmp_path / "nope").exists()  # reading never creates a trail

    res = run([str(exe), "audit", "log", "--db", "mysql://x/y"], timeout=60, check=False)
    assert res.returncode == 2 and "unsupported audit database" in res.stderr


def test_cli_startup_does_not_import_the_database_stack() -> None:
    code = ("import sys, controller.cli; "
            "print(sorted(m for m in ('sqlalchemy', 'alembic', 'psycopg') if m in sys.modules))")
    res = run([sys.executable, "-c", code], timeout=60)
    assert res.stdout.strip() == "[]"


def test_blame_names_the_event_commit_and_author_masked_in_text_and_json(db_url: str) -> None:
    sha = "abcdef0123456789abcdef0123456789abcdef01"
    with AuditStore(db_url) as s:
        first = s.append({"node": "node1", "kind": "apply", "outcome": "success",
                          "commit": {"sha": sha, "author": "Jane <jane@example.org>", "message": "rotate"},
                          "config_before": CONFIG.replace(SECRET, "old-secret-1"), "config_after": CONFIG})
        s.append({"node": "node1", "kind": "apply", "outcome": "success",
                  "commit": {"sha": "1" * 40}, "details": {"backfilled": True}})
    res = invoke("blame", "--db", db_url)
    assert res.exit_code == 0, res.output
    row = next(ln for ln in res.stdout.splitlines() if "resource f" in ln)
    assert "changed" in row and first.event_id[:8] in row and "abcdef0123" in row and "Jane" in row
    assert row.split()[2] == "*"  # a later write's changes are not known here
    assert "1 write(s) in this trail have no known changes" in res.stdout
    res = invoke("blame", "f", "--db", db_url)
    assert res.exit_code == 0 and "f params.password: **** -> ****" in res.stdout, res.stdout
    assert SECRET not in res.stdout and "old-secret-1" not in res.stdout
    doc = json.loads(invoke("blame", "f", "--db", db_url, "--format", "json").stdout)
    assert [(o["kind"], o["id"], o["event_id"], o["commit"]) for o in doc["objects"]] == [
        ("resource", "f", first.event_id, sha)]
    assert SECRET not in json.dumps(doc) and [u["event"] for u in doc["unknown"]] == [2]
    res = invoke("blame", "nothing-like-it", "--db", db_url)
    assert res.exit_code == 1 and "no event in this trail changed nothing-like-it" in res.stdout
