#!/usr/bin/env bash
# Installs ha-gitops on a cluster node (as root): Debian packages, a venv in /opt/ha-gitops, the systemd
# unit, and an example configuration. Run from a checkout: `bash deploy/install.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
HA_GITOPS_KEEP_SERVICES=1 bash deploy/install-debian-packages.sh   # a cluster node keeps its services
python3 -m venv /opt/ha-gitops
/opt/ha-gitops/bin/pip install -q --upgrade pip
/opt/ha-gitops/bin/pip install -q '.[postgres]'
install -d -m 0755 /etc/ha-gitops
[ -e /etc/ha-gitops/agent.toml ] || install -m 0600 deploy/agent.toml.example /etc/ha-gitops/agent.toml
install -m 0644 deploy/ha-gitops-agent.service /etc/systemd/system/ha-gitops-agent.service
systemctl daemon-reload
echo "edit /etc/ha-gitops/agent.toml (repo_url at least), then: systemctl enable --now ha-gitops-agent"
