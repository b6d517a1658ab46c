"""The observed-cluster models under the name controller/cluster/ code imports them by. They live in
controller/observed.py: pure data and parsers, part of the core, which never imports cluster/."""

from controller.observed import (
    ClusterStatus,
    FailedAction,
    NodeState,
    QuorumInfo,
    QuorumMember,
    ResourceState,
    parse_crm_mon,
    parse_quorumtool,
)

__all__ = ["ClusterStatus", "FailedAction", "NodeState", "QuorumInfo", "QuorumMember", "ResourceState",
           "parse_crm_mon", "parse_quorumtool"]
