"""The desired-state folder (corosync.conf, cib.crm or cib.xml, cluster.toml) -> a validated DesiredState."""

from controller.desired.findings import DesiredStateError, Finding
from controller.desired.policy import ClusterPolicy, IgnoreRule, load_policy, parse_policy
from controller.desired.state import DesiredState, load_desired
from controller.desired.validate import ValidationReport, validate_desired, validate_state

__all__ = [
    "ClusterPolicy", "DesiredState", "DesiredStateError", "Finding", "IgnoreRule", "ValidationReport",
    "load_desired", "load_policy", "parse_policy", "validate_desired", "validate_state",
]
