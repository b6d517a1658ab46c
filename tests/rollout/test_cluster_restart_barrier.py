"""A cluster restart stops pacemaker on the node, then waits until no node's controller is left in
corosync's membership before it restarts corosync (a node back early fenced a late one as "unclean"):
the count it waits on. The restart itself: tests/rollout/test_rollout_on_sandbox.py, where every node must
record its own restart (a fenced one does not)."""

from __future__ import annotations

from controller.cluster.adapter import controller_members

# `corosync-cpgtool -e -d " "` on a sandbox node of the reference cluster, every daemon up
ALL_UP = """GRP_NAME PID NODEID
crmd\x00 32 182190357
crmd\x00 32 182190359
crmd\x00 32 182190358
attrd\x00 30 182190357
attrd\x00 30 182190359
stonith-ng\x00 28 182190357
cib\x00 27 182190357
"""
ONE_LEFT = "GRP_NAME PID NODEID\ncrmd\x00 32 182190359\ncib\x00 27 182190359\n"


def test_controller_members_counts_the_controllers_group_only() -> None:
    assert controller_members(ALL_UP) == 3
    assert controller_members(ONE_LEFT) == 1
    assert controller_members("GRP_NAME PID NODEID\ncib\x00 27 182190359\n") == 0
