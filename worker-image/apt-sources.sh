#!/usr/bin/env bash
# Prints the apt archive a machine uses, for build.sh: `distro=ID`, `mirror=URL` and `security=URL` (each
# empty when not found), read from ROOT/etc/os-release and ROOT/etc/apt/sources.list,
# sources.list.d/*.list (one-line format) and sources.list.d/*.sources (deb822), the files apt reads.
# The archive is the first enabled `deb` entry with an http(s) URI, the release's codename as its suite and
# component main; the security archive the same with suite CODENAME-security (or CODENAME/updates, the
# older name). The suite and component rules keep third-party repositories out (they use other suites,
# or components such as `stable`).
# Usage: worker-image/apt-sources.sh [ROOT]   (default /)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
root="${1:-/}"
root="${root%/}"

# entries: one line "URI SUITE COMPONENT..." per enabled deb entry, in apt's reading order.
entries() {
  local f
  for f in "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # Options in brackets may hold spaces; comments run to the end of the line.
    sed -e 's/#.*//' -e 's/\[[^]]*\]//g' "$f" | awk '$1 == "deb" && NF >= 4 { $1 = ""; print substr($0, 2) }'
  done
  for f in "$root"/etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush(   nu, ns, u, s, i, j) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
          nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) if (u[i] != "" && s[j] != "") print u[i], s[j], components
        }
        types = ""; uris = ""; suites = ""; components = ""; enabled = ""
      }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }   # a continuation line (a key block in Signed-By)
      {
        i = index($0, ":"); if (i == 0) next
        key = tolower(substr($0, 1, i - 1)); value = substr($0, i + 1); gsub(/^[ \t]+|[ \t]+$/, "", value)
        if (key == "types") types = value; else if (key == "uris") uris = value
        else if (key == "suites") suites = value; else if (key == "components") components = value
        else if (key == "enabled") enabled = value
      }
      END { flush() }' "$f"
  done
}

# pick SUITE...: the URI of the first entry with one of these suites and component main.
pick() {
  entries | awk -v want="$*" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) ok[w[i]] = 1 }
    !found && $1 ~ /^https?:\/\// && ($2 in ok) {
      for (i = 3; i <= NF; i++) if ($i == "main") { sub(/\/+$/, "", $1); print $1; found = 1; break }
    }'
}

distro=
codename=
if [ -f "$root/etc/os-release" ]; then
  # shellcheck disable=SC1091 # a file of the machine read, not of this repository
  distro="$(. "$root/etc/os-release"; echo "${ID:-}")"
  # shellcheck disable=SC1091
  codename="$(. "$root/etc/os-release"; echo "${VERSION_CODENAME:-}")"
fi
mirror=
security=
if [ -n "$codename" ]; then
  mirror="$(pick "$codename")"
  security="$(pick "$codename-security" "$codename/updates")"
fi
printf 'distro=%s\nmirror=%s\nsecurity=%s\n' "$distro" "$mirror" "$security"
