#!/usr/bin/env bash
# Installs sysbox-ce (Nestybox's container runtime: Docker-in-Docker without --privileged) on an
# Ubuntu host that already runs Docker Engine from Docker's own packages (not the snap), and checks
# that `sysbox-runc` works. Run as root: sudo deploy/install-sysbox.sh
#
# Settings (environment):
#   SYSBOX_VERSION   release to install (default below; see https://github.com/nestybox/sysbox/releases)
#   SYSBOX_SHA256    expected SHA-256 of the .deb; checked when set (recommended)
#   SYSBOX_DEB       a .deb already on this machine (air-gapped hosts); skips the download
set -euo pipefail

SYSBOX_VERSION="${SYSBOX_VERSION:-0.6.7}"
SYSBOX_SHA256="${SYSBOX_SHA256:-}"
SYSBOX_DEB="${SYSBOX_DEB:-}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'install-sysbox: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"

# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = ubuntu ] || die "this script supports Ubuntu (found ${PRETTY_NAME:-unknown}); see Nestybox's docs for other distributions"
case "${VERSION_ID:-}" in
  20.04|22.04|24.04) ;;
  *) printf 'install-sysbox: warning: Ubuntu %s is not one sysbox is released for (20.04, 22.04, 24.04); trying anyway\n' "${VERSION_ID:-?}" >&2 ;;
esac

case "$(dpkg --print-architecture)" in
  amd64) arch=amd64 ;;
  arm64) arch=arm64 ;;
  *) die "unsupported architecture $(dpkg --print-architecture) (sysbox ships amd64 and arm64)" ;;
esac

command -v docker >/dev/null || die "Docker Engine is not installed: install docker-ce from Docker's apt repository first (https://docs.docker.com/engine/install/ubuntu/)"
if snap list docker >/dev/null 2>&1; then
  die "Docker is installed as a snap; sysbox needs Docker Engine from Docker's apt repository"
fi
systemctl is-active --quiet docker || die "the docker service is not running: systemctl start docker"

if dpkg-query -W -f='${Status} ${Version}\n' sysbox-ce 2>/dev/null | grep -q '^install ok installed'; then
  installed="$(dpkg-query -W -f='${Version}' sysbox-ce)"
  say "sysbox-ce ${installed} is installed already"
  case "$installed" in
    "${SYSBOX_VERSION}"*) ;;
    *) die "a different sysbox-ce (${installed}) is installed: remove it first (apt-get remove sysbox-ce, with no containers running)";;
  esac
else
  # The package restarts Docker to register the runtime and refuses while containers run.
  running="$(docker ps -q | wc -l)"
  if [ "$running" -ne 0 ]; then
    die "${running} container(s) are running; stop them first (docker ps; on a fleet host: systemctl stop fleet-spawn) — installing sysbox restarts Docker"
  fi

  say "installing prerequisites"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q jq fuse rsync wget ca-certificates "linux-headers-$(uname -r)" || apt-get install -y -q jq fuse rsync wget ca-certificates

  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  if [ -z "$SYSBOX_DEB" ]; then
    deb_name="sysbox-ce_${SYSBOX_VERSION}-0.linux_${arch}.deb"
    url="https://downloads.nestybox.com/sysbox/releases/v${SYSBOX_VERSION}/${deb_name}"
    say "downloading ${url}"
    wget -q --show-progress -O "${workdir}/${deb_name}" "$url" || die "download failed: check SYSBOX_VERSION (${SYSBOX_VERSION}) against https://github.com/nestybox/sysbox/releases"
    SYSBOX_DEB="${workdir}/${deb_name}"
  fi
  [ -f "$SYSBOX_DEB" ] || die "no such file: ${SYSBOX_DEB}"
  if [ -n "$SYSBOX_SHA256" ]; then
    echo "${SYSBOX_SHA256}  ${SYSBOX_DEB}" | sha256sum -c - || die "checksum mismatch for ${SYSBOX_DEB}"
  else
    printf 'install-sysbox: note: SYSBOX_SHA256 is unset, so the package is not checksum-verified (sha256: %s)\n' "$(sha256sum "$SYSBOX_DEB" | cut -d' ' -f1)" >&2
  fi

  say "installing $(basename "$SYSBOX_DEB") (Docker restarts)"
  apt-get install -y -q "$SYSBOX_DEB"
fi

say "checking"
systemctl is-active --quiet sysbox || die "the sysbox service is not active: journalctl -u sysbox"
docker info --format '{{json .Runtimes}}' | grep -q '"sysbox-runc"' || die "Docker does not list the sysbox-runc runtime: check /etc/docker/daemon.json and restart docker"
# A real container under sysbox; needs the image locally or network access to pull it.
if docker run --rm --runtime=sysbox-runc busybox:stable true >/dev/null 2>&1 || docker run --rm --runtime=sysbox-runc alpine:3 true >/dev/null 2>&1; then
  say "sysbox-runc runs containers"
else
  printf 'install-sysbox: warning: could not run a test container with --runtime=sysbox-runc (no busybox/alpine image and no registry access?); try: docker run --rm --runtime=sysbox-runc IMAGE true\n' >&2
fi
say "done: sysbox-ce $(dpkg-query -W -f='${Version}' sysbox-ce) is ready; fleet workers use it with FLEET_RUNTIME=sysbox-runc (the default)"
