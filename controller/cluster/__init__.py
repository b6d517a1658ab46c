"""The adapter to a live cluster: runs the Pacemaker and Corosync tools, parses what they print."""
