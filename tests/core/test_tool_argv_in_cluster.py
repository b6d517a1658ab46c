"""Every Pacemaker/Corosync tool's argument list lives in controller/cluster/ (ARCHITECTURE.md).

A tool name as a whole string literal (an argv element: ["crm_attribute", ...]) anywhere else in
controller/ is a finding, named by file and line. Prose that mentions a tool ("corosync -t exited")
is not a whole literal and is not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

CONTROLLER = REPO / "controller"
TOOLS = frozenset({"crm_attribute", "cibadmin", "crm_simulate", "crm_resource", "corosync-cfgtool",
                   "corosync-quorumtool", "corosync-cmapctl", "crm_mon", "crm_verify", "stonith_admin",
                   "corosync"})
# Where argv may be built: the cluster adapter layer, and the sandbox (it *is* a cluster on this machine).
HOMES = ("cluster", "sandbox")
# Not yet moved: owned by others at the time of writing. Shrink this list as each file moves its argv
# into controller/cluster/; never grow it.
ALLOWED = frozenset({
    "desired/verify.py",     # crm_verify -x on the desired CIB
    "desired/crm.py",        # cibadmin --empty (the CIB template crmsh starts from)
    "desired/crm_server.py", # the warm crmsh process
    "desired/crm_worker.py",
    "cli/sandbox.py",        # "corosync" is a column and a `sandbox kill` service name there
})


def findings(root: Path = CONTROLLER) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in HOMES or rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in TOOLS:
                out.append(f"controller/{rel}:{node.lineno}: {node.value!r}")
    return out


def test_no_tool_argv_outside_controller_cluster() -> None:
    found = findings()
    assert not found, ("tool argv outside controller/cluster/ (add a LiveCluster method and call it):\n"
                       + "\n".join(found))


def test_the_check_names_file_and_line_of_a_stray_argv(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "adapter.py").write_text('ARGV = ["crm_mon", "--one-shot"]\n')
    (tmp_path / "stray.py").write_text('"""Runs crm_mon."""\n\nx = 1\nARGV = ["crm_attribute", "-N", "n1"]\n'
                                       'MSG = "crm_attribute failed"\n')
    assert findings(tmp_path) == ["controller/stray.py:4: 'crm_attribute'"]
