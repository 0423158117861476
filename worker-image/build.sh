#!/usr/bin/env bash
# Builds the coding worker image. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: worker-image/build.sh [options]

Builds the coding worker image as IMAGE:latest and IMAGE:<hash>, where <hash> is the first 12 hex digits
of a sha256 over every file in worker-image/, the base image name, the package sources and the extra CA
bundle (if any). When IMAGE:<hash> already exists the build is skipped and IMAGE:latest is pointed at it.
Builds run with --network host. The last line printed on stdout is the IMAGE:<hash> reference.

Package sources follow this machine: the npm registry is `npm config get registry`, the distribution
archive and its security archive are the first `deb` entries of /etc/apt/sources.list and
/etc/apt/sources.list.d/*.{list,sources} for this machine's release (suite = its codename, resp.
codename-security, component main). They are used for a base of this machine's distribution; a base of
another keeps its own apt sources. The flags below override them.

Options:
  --base IMAGE              base image (default ubuntu:24.04; needs a registry or a local copy)
  --base-from-debootstrap   make a Debian bookworm base locally with debootstrap and build FROM it;
                            the base is cached as fleet-base:bookworm and made only when absent
  --ca-bundle FILE          extra PEM CA bundle trusted by apt, git, npm and node, at build time and in
                            the image (default: $FLEET_CA_BUNDLE when set; none otherwise)
  --mirror URL              the base's distribution archive (debootstrap's Debian mirror), used for any base
  --security-mirror URL     its security archive (with --mirror; none when not given)
  --npm-registry URL        the npm registry (default: `npm config get registry`)
  --image NAME              image repository name (default coding-worker)
  --force                   build even when IMAGE:<hash> exists
  --no-cache                build every layer anew (implies --force)
  --print-tag               print IMAGE:<hash> and exit without building
  -h, --help                this text
EOF
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="ubuntu:24.04"
debootstrap_base=0
ca_bundle="${FLEET_CA_BUNDLE:-}"
mirror=""
security_mirror=""
npm_registry=""
image="coding-worker"
force=0
no_cache=()
print_tag=0
base_tag="fleet-base:bookworm"

while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --base-from-debootstrap) debootstrap_base=1; shift ;;
    --ca-bundle) ca_bundle="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --security-mirror) security_mirror="$2"; shift 2 ;;
    --npm-registry) npm_registry="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --force) force=1; shift ;;
    --no-cache) force=1; no_cache=(--no-cache); shift ;;
    --print-tag) print_tag=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: $*" >&2; exit 2; }

if [ "$debootstrap_base" = 1 ]; then base="$base_tag"; fi
if [ -n "$ca_bundle" ] && [ ! -r "$ca_bundle" ]; then die "CA bundle not readable: $ca_bundle"; fi

# Package sources: a flag, else this machine's own configuration. Nothing here names a package host.
if [ -z "$npm_registry" ]; then
  command -v npm >/dev/null || die "no npm registry: npm is not installed on this machine; give --npm-registry URL"
  npm_registry="$(npm config get registry)" || die "no npm registry: \`npm config get registry\` failed; give --npm-registry URL"
fi
npm_registry="${npm_registry%/}"
[[ $npm_registry =~ ^https?://[^/]+ ]] || die "the npm registry is not an http(s) URL: '$npm_registry' (give --npm-registry URL)"
apt_distro=""
if [ -z "$mirror" ]; then
  apt_root="${FLEET_APT_ROOT:-/}"   # another root's apt sources: for the tests
  sources="$("$here/apt-sources.sh" "$apt_root")" || die "could not read the apt sources under $apt_root"
  apt_distro="$(sed -n 's/^distro=//p' <<< "$sources")"
  mirror="$(sed -n 's/^mirror=//p' <<< "$sources")"
  [ -n "$security_mirror" ] || security_mirror="$(sed -n 's/^security=//p' <<< "$sources")"
  [ -n "$mirror" ] || die "no apt mirror: this machine's apt sources (${apt_root%/}/etc/apt/sources.list, sources.list.d/*.list and *.sources) have no enabled http(s) \`deb\` entry for its release with component main; give --mirror URL"
  if [ "$debootstrap_base" = 1 ] && [ "$apt_distro" != debian ]; then
    die "--base-from-debootstrap needs a Debian mirror, and this machine's apt sources are for '$apt_distro'; give --mirror URL"
  fi
fi
mirror="${mirror%/}"
security_mirror="${security_mirror%/}"

content_hash() {
  {
    (cd "$here" && find . -type f ! -name '*.log' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    echo "base=$base"
    echo "npm=$npm_registry"
    echo "apt=$apt_distro $mirror $security_mirror"
    if [ -n "$ca_bundle" ]; then echo "ca=$(sha256sum < "$ca_bundle")"; fi
  } | sha256sum | cut -c1-12
}

hash_ref="$image:$(content_hash)"
if [ "$print_tag" = 1 ]; then echo "$hash_ref"; exit 0; fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# One build at a time on this host (test files start builds in parallel); the waiter then finds the tag.
exec 9> "${TMPDIR:-/tmp}/fleet-worker-build.lock"
flock 9

make_debootstrap_base() {
  if image_exists "$base_tag"; then log "$base_tag exists, not rebuilding it"; return; fi
  command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { log "--base-from-debootstrap needs root (debootstrap chroots)"; exit 1; }
  local root
  root="$(mktemp -d /tmp/fleet-base.XXXXXX)"
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" EXIT
  log "debootstrap bookworm into $root from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
  # The image's apt sources are written by the Dockerfile (APT_MIRROR), so this base needs none of its own.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - "$base_tag" >&2
  rm -rf "$root"
  trap - EXIT
  log "made $base_tag"
}

if image_exists "$hash_ref" && [ "$force" = 0 ]; then
  log "$hash_ref exists, skipping the build"
  docker tag "$hash_ref" "$image:latest"
  echo "$hash_ref"
  exit 0
fi

if [ "$debootstrap_base" = 1 ]; then make_debootstrap_base; fi

# The context is a copy of worker-image/ plus the CA bundle (or an empty file), so the bundle never has
# to live in the repository.
context="$(mktemp -d /tmp/fleet-worker-context.XXXXXX)"
trap 'rm -rf "$context"' EXIT
cp -a "$here"/. "$context"/
if [ -n "$ca_bundle" ]; then cp "$ca_bundle" "$context/extra-ca.pem"; else : > "$context/extra-ca.pem"; fi

log "building $hash_ref FROM $base"
start=$(date +%s)
docker build "${no_cache[@]}" --network host --build-arg "BASE=$base" --build-arg "NPM_REGISTRY=$npm_registry" \
  --build-arg "APT_DISTRO=$apt_distro" --build-arg "APT_MIRROR=$mirror" --build-arg "APT_SECURITY_MIRROR=$security_mirror" \
  -t "$hash_ref" -t "$image:latest" "$context" >&2
log "built $hash_ref in $(( $(date +%s) - start ))s"
echo "$hash_ref"
