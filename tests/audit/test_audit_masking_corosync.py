"""Corosync's timing keys are not secrets: `audit show` and `audit log` print totem.token & co. in clear.

The events are the ones the agent records for a token change: the apply event (corosync_changes from the
real corosync diff, both files), and a rollout verify failure whose message is the rollout's own
runtime check (CorosyncRollout.runtime_problems against cmap). A fence password in the same events is
still masked.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from controller.audit.masking import MASK, is_secret_name
from controller.audit.store import AuditStore
from controller.cli import main
from controller.cluster.adapter import LiveCluster
from controller.cluster.runner import CallRunner
from controller.command import Result as ToolResult
from controller.corosync import parse_corosync
from controller.corosync.diff import diff_corosync
from controller.rollout import BACKUP_SUFFIX, CorosyncRollout

REPO = Path(__file__).resolve().parents[2]
OLD = (REPO / "desired" / "kamailio" / "corosync.conf").read_text()
NEW = OLD.replace("token: 3000", "token: 3250").replace("token_retransmits_before_loss_const: 10",
                                                        "token_retransmits_before_loss_const: 12")
SECRET = "fence-pw-0451"
CONFIG = ('<cib><configuration><resources><primitive id="f" class="stonith" type="fence_ipmilan">'
          f'<instance_attributes id="f-ia"><nvpair id="f-ia-password" name="password" value="{SECRET}"/>'
          '<nvpair id="f-ia-ip" name="ip" value="10.0.0.9"/></instance_attributes></primitive>'
          '</resources></configuration></cib>')


def _cmap_still_old(argv: list[str], **_: object) -> ToolResult:
    """corosync-cmapctl -g KEY on a node whose reload did not take: the old values."""
    key = argv[-1]
    values = {"totem.token": "3000", "runtime.config.totem.token": "3000",
              "totem.token_retransmits_before_loss_const": "10",
              "runtime.config.totem.token_retransmits_before_loss_const": "10",
              "config.totemconfig_reload_in_progress": "0"}
    if key not in values:
        return ToolResult(argv, 1, "", "Can't get key")
    return ToolResult(argv, 0, f"{key} (u32) = {values[key]}\n", "")


def _record(tmp_path: Path, url: str) -> tuple[int, int, list[str]]:
    conf = tmp_path / "corosync.conf"
    conf.write_text(NEW)
    conf.with_name(conf.name + BACKUP_SUFFIX).write_text(OLD)
    changes = diff_corosync(parse_corosync(OLD), parse_corosync(NEW))
    with AuditStore(url) as store:
        rollout = CorosyncRollout(node="kamailio01", cluster=LiveCluster(CallRunner(_cmap_still_old)),
                                  store=store, service_command=["true"], conf_path=conf)
        problems = rollout.runtime_problems(NEW)
        why = "runtime still differs 30s after the reload: " + "; ".join(problems)
        apply = store.append({
            "node": "kamailio01", "kind": "apply", "outcome": "success",
            "summary": "applied: 2 change(s); the corosync.conf rollout follows",
            "config_before": CONFIG, "config_after": CONFIG, "corosync_before": OLD, "corosync_after": NEW,
            "details": {"corosync_changes": [c.as_dict() for c in changes]}}).id
        verify = store.append({
            "node": "kamailio01", "kind": "verify", "outcome": "failure",
            "summary": f"corosync.conf abc failed on kamailio01: {why}"[:300], "error": why,
            "details": {"step": "verify", "problems": problems, "stage": "rollout",
                        "reason": "RolloutFailed"}}).id
    return apply, verify, problems


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


def test_a_token_change_reads_in_clear_in_audit_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    apply, verify, problems = _record(tmp_path, url)
    assert "runtime.config.totem.token = 3000 (expected 3250 + k*650)" in problems

    shown = json.loads(invoke("audit", "show", str(apply), "--db", url, "--format", "json").stdout)
    assert {(c["path"], c["old"], c["new"]) for c in shown["details"]["corosync_changes"]} == {
        ("totem.token", "3000", "3250"), ("totem.token_retransmits_before_loss_const", "10", "12")}
    assert shown["corosync_before"] == OLD and shown["corosync_after"] == NEW  # 3000 is not blanked
    assert SECRET not in json.dumps(shown) and f'name="password" value="{MASK}"' in shown["config_after"]

    shown = json.loads(invoke("audit", "show", str(verify), "--db", url, "--format", "json").stdout)
    assert shown["details"]["problems"] == problems
    assert shown["error"] == "runtime still differs 30s after the reload: " + "; ".join(problems)
    assert MASK not in json.dumps(shown)

    text = invoke("audit", "show", str(verify), "--db", url).stdout
    assert "runtime.config.totem.token = 3000 (expected 3250 + k*650)" in text
    assert "totem.token_retransmits_before_loss_const = 10 (expected 12)" in text
    log = invoke("audit", "log", "--db", url).stdout
    assert "totem.token = 3000" in log and MASK not in log


def test_only_real_secrets_are_secret_names() -> None:
    timing = ["totem.token", "token_coefficient", "token_retransmit", "token_retransmits_before_loss_const",
              "token_warning", "runtime.config.totem.token", "totem.token_coefficient", "consensus",
              "totem.crypto_cipher", "totem.keyfile", "quorum.expected_votes"]
    assert [n for n in timing if is_secret_name(n)] == []
    real = ["password", "passwd", "secret", "api_key", "private_key", "privkey", "crypto_key", "ssh-key",
            "auth_token", "token", "api_token", "client_secret", "totem.key", "quorum.device.net.password"]
    assert [n for n in real if not is_secret_name(n)] == []
