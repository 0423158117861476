#!/usr/bin/env bash
# Measures the time from container start (Docker's State.StartedAt) to agent start (a custom agent's
# first command), without Docker-in-Docker and in the caps mode of dind-caps.json, N runs each; prints
# each run and the medians. Network none; a local bare repository stands in for GitHub.
# Usage: worker-image/measure-start.sh [IMAGE] [RUNS]   (defaults: coding-worker:latest, 5)
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
image="${1:-coding-worker:latest}"
runs="${2:-5}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
caps="$here/dind-caps.json"

work="$(mktemp -d /tmp/fleet-measure.XXXXXX)"
volume="fleet-measure-$$"
cleanup() { rm -rf "$work"; docker volume rm -f "$volume" >/dev/null 2>&1 || true; }
trap cleanup EXIT
git init -q --bare -b main "$work/origin.git"
git -c init.defaultBranch=main init -q "$work/seed"
echo hi > "$work/seed/README.md"
git -C "$work/seed" add README.md
git -C "$work/seed" -c user.name=m -c user.email=m@m.invalid commit -qm initial
git -C "$work/seed" push -q "$work/origin.git" main
mkdir -p "$work/input" && echo '# measure' > "$work/input/TASK.md"
docker volume create "$volume" >/dev/null

ns() { date -d "$1" +%s%N; }

one() { # one MODE: prints milliseconds from container start to agent start
  local mode="$1" name="fleet-measure-$$-$RANDOM" args=()
  if [ "$mode" = caps ]; then
    mapfile -t cap < <(jq -r '.CapAdd[]' "$caps")
    mapfile -t sec < <(jq -r '.SecurityOpt[]' "$caps")
    for c in "${cap[@]}"; do args+=(--cap-add "$c"); done
    for s in "${sec[@]}"; do args+=(--security-opt "$s"); done
    args+=(--cgroupns "$(jq -r .CgroupnsMode "$caps")" -v "$volume:$(jq -r .DataRoot "$caps")" -e FLEET_DIND=on)
  else
    args+=(-e FLEET_DIND=off)
  fi
  docker create --name "$name" --network none "${args[@]}" -v "$work/origin.git:/srv/origin.git" \
    -e FLEET_GIT_URL=file:///srv/origin.git -e FLEET_AGENT=custom \
    -e 'FLEET_AGENT_CMD=echo "AGENT_START_NS=$(date +%s%N)"' "$image" >/dev/null
  docker cp "$work/input/." "$name:/fleet/input/" >/dev/null
  local out started agent
  out="$(docker start -a "$name")"
  started="$(ns "$(docker inspect -f '{{.State.StartedAt}}' "$name")")"
  docker rm -f "$name" >/dev/null
  agent="$(sed -n 's/^AGENT_START_NS=//p' <<< "$out")"
  [ -n "$agent" ] || { echo "no agent start in the output of a $mode run:" >&2; echo "$out" >&2; exit 1; }
  echo $(( (agent - started) / 1000000 ))
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

for mode in off caps; do
  results=()
  for _ in $(seq 1 "$runs"); do results+=("$(one "$mode")"); done
  echo "dind=$mode start->agent ms: ${results[*]}; median $(printf '%s\n' "${results[@]}" | median)"
done
echo "image size: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
