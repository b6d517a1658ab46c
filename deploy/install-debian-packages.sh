#!/usr/bin/env bash
# Installs the Debian packages ha-gitops needs, only when missing (idempotent, as root).
# Used by `make setup` and by the production install steps in the README.
set -euo pipefail
packages=(pacemaker pacemaker-cli-utils corosync crmsh resource-agents yamllint
          iproute2 procps psmisc iputils-ping git gnupg openssh-client python3 python3-venv postgresql age)
# Test tools, not for a cluster node (deploy/install.sh sets HA_GITOPS_KEEP_SERVICES=1): prometheus brings
# promtool, which checks the metrics exposition and the alert rules; its server is not run (see below).
# openssh-server, apache2 (+ apache2-utils, openssl) run the sandbox's forge, inside its namespace only.
if [ "${HA_GITOPS_KEEP_SERVICES:-0}" != 1 ]; then
  packages+=(prometheus openssh-server apache2 apache2-utils openssl)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # openssh-server and apache2 start their daemons on install; the sandbox's forge runs its own copies
  # in a namespace, so none may start on the host (policy-rc.d: Debian's switch for that, if none is set).
  guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if ((guard)); then rm -f /usr/sbin/policy-rc.d; fi
fi
# The Debian packages enable corosync/pacemaker services; on a machine that is not itself a cluster node
# (a CI runner, a laptop running the sandbox) they must not run in the root namespace.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ] && [ "${HA_GITOPS_KEEP_SERVICES:-0}" != 1 ]; then
  systemctl disable --now pacemaker corosync >/dev/null 2>&1 || true
  # Only promtool is wanted from the prometheus package: its server is not ours to run on a build machine.
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
