"""ha-gitops: keep a Pacemaker/Corosync cluster's configuration in git."""

__version__ = "0.1.0"
