#!/usr/bin/env bash
# Installs what fleet and its tests need on Debian or Ubuntu, from the distro archive and the
# npm registry only: Node.js 20+, Docker Engine (docker.io), redis-server, redis-sentinel, and for the tests and
# lint busybox-static, python3-redis, python3-cryptography, debootstrap, shellcheck, runsc (gVisor, where
# the archive has it) and (Debian) chromium. Safe to run again: it installs only what is missing. Run as root (or through sudo).
set -euo pipefail

if [[ ${1:-} == --help || ${1:-} == -h ]]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-prereqs: run as root (sudo $0)" >&2
  exit 1
fi

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

packages=(docker.io redis-server redis-sentinel busybox-static python3-redis python3-cryptography debootstrap shellcheck git ca-certificates tar)
# shellcheck disable=SC1091 # the machine's file, not one of this repository
. /etc/os-release
# Ubuntu's chromium is a snap stub that cannot run in a container; the browser test then skips.
[[ ${ID:-} == debian ]] && packages+=(chromium)
# gVisor's runsc (FLEET_RUNTIME=runsc): Debian 12's main archive has it as `runsc`; elsewhere it may be absent.
runsc_known() { apt-cache show runsc >/dev/null 2>&1; }
runsc_known || apt-get update -qq
if runsc_known; then
  packages+=(runsc)
else
  echo "install-prereqs: no runsc package in this archive; the gVisor test will skip (see README \"Runtimes\")" >&2
fi
(( $(node_major) >= 20 )) || packages+=(nodejs npm)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  echo "install-prereqs: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian 12 and Ubuntu 24.04 ship Node 18: the npm registry's `node` package carries a Node 20 binary.
if (( $(node_major) < 20 )); then
  echo "install-prereqs: distro Node.js is $(node --version 2>/dev/null || echo missing); installing Node 20 from the npm registry"
  npm install -g node@20
  hash -r
fi
echo "install-prereqs: node $(node --version), $(docker --version), $(redis-server --version | cut -d' ' -f1-3)"
