#!/usr/bin/env bash
# The compose mesh as separate hosts: builds nothing (run docker/build.sh first), brings the
# mesh up, and asserts discovery, delivery across both roots and a remote call across
# containers; a killed subscriber noticed by its root; a node cut off its network and
# reconnected heals and receives what is published after the heal; `docker stop` gives a
# goodbye, not a timeout. Every wait is bounded; the mesh is removed however the test ends.
set -euo pipefail
cd "$(dirname "$0")"
project="chaskitest$$"
export CHASKI_IMAGE=${CHASKI_IMAGE:-chaski:local}
# Short liveness bounds, so a cut is noticed in seconds.
export CHASKI_KEEPALIVE_INTERVAL=1 CHASKI_IDLE_TIMEOUT=3
if command -v docker-compose >/dev/null; then
    compose() { docker-compose -p "$project" -f compose.yaml "$@"; }
elif docker compose version >/dev/null 2>&1; then
    compose() { docker compose -p "$project" -f compose.yaml "$@"; }
elif [[ ${CI:-} == true ]]; then
    echo "FAIL: CI=true and neither docker-compose nor docker compose is installed" >&2
    exit 1
else
    echo "SKIP: neither docker-compose nor docker compose is installed"
    exit 0
fi
# Compose names containers <project>_<service>_1 (v1) or <project>-<service>-1 (v2).
container() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null | head -1)
    echo "${id:-${project}_$1_1}"
}
cleanup() { compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true; }
trap cleanup EXIT

fail() {
    exec >&2
    echo "FAIL: $*"
    for s in root-a root-b display logger client; do
        echo "--- $s"; docker logs --tail 15 "$(container "$s")" 2>&1 || true
    done
    exit 1
}
# logs SERVICE: the service's log; a log that cannot be read fails the test (it is never
# taken for an empty one).
logs() { docker logs "$(container "$1")" 2>&1 || fail "cannot read $1's log"; }
# log_has SERVICE PATTERN: whether the service's log has a line matching PATTERN (grep reads
# the whole log: `grep -q` in a pipe would stop its writer early, a failure under pipefail).
log_has() { local l; l=$(logs "$1"); grep -qE -- "$2" <<<"$l"; }
# wait_log SERVICE PATTERN SECONDS: waits for the pattern; prints how long it took (s).
wait_log() {
    local start=$(date +%s.%N) end=$((SECONDS + $3))
    until log_has "$1" "$2"; do
        ((SECONDS < end)) || fail "no '$2' in $1 within $3 s"
        sleep 0.1
    done
    since "$start"
}
# since START: seconds from START (date +%s.%N) to now, to 0.01 s.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# count SERVICE PATTERN: lines of the log matching PATTERN (0 only when none match).
count() { local l; l=$(logs "$1"); grep -cE -- "$2" <<<"$l" || true; }
# last_n SERVICE WORD: the number after the last "WORD <n>" in the log (0 if there is none).
last_n() {
    local l n
    l=$(logs "$1")
    n=$(grep -oE -- "$2 [0-9]+" <<<"$l" | tail -1 | grep -oE '[0-9]+$' || true)
    echo "${n:-0}"
}
# health SERVICE: the container's health as its HEALTHCHECK reports it.
health() { docker inspect -f '{{.State.Health.Status}}' "$(container "$1")" || fail "inspect $1"; }

echo "== docker: the mesh comes up ($CHASKI_IMAGE)"
compose up -d >/dev/null 2>&1 || fail "compose up"
wait_log display '^\[sensors\] temperature' 60 >/dev/null
echo "   display receives sensors (same root)"
wait_log display '^\[alerts\] alert' 60 >/dev/null
echo "   display receives alerts (published on root-b's side, across the two roots)"
wait_log logger '^\[alerts\] alert' 30 >/dev/null
wait_log client '^call demo.add\([0-9]+, [0-9]+\) = ' 30 >/dev/null
echo "   client's remote calls to service answered across containers"
end=$((SECONDS + 40))
for s in root-a root-b display; do
    until [[ $(health "$s") == healthy ]]; do
        ((SECONDS < end)) || fail "$s is not healthy by its HEALTHCHECK: $(health "$s")"
        sleep 0.5
    done
done
echo "   the image's HEALTHCHECK reports root-a, root-b and display healthy"

echo "== docker kill logger: root-b notices"
docker kill "$(container logger)" >/dev/null
took=$(wait_log root-b 'peer logger lost' 15)
echo "   noticed after ${took} s"

echo "== display cut off its network, then reconnected"
docker network disconnect "${project}_front" "$(container display)"
took=$(wait_log display 'peer root-a lost' 20)
echo "   display noticed the cut after ${took} s"
before=$(last_n display 'temperature')
ups=$(count display 'peer root-a connected')
sleep 2
docker network connect "${project}_front" "$(container display)"
start=$(date +%s.%N)
end=$((SECONDS + 40))
until (($(count display 'peer root-a connected') > ups)); do
    ((SECONDS < end)) || fail "display did not reconnect within 40 s of the heal"
    sleep 0.1
done
echo "   edge back $(since "$start") s after the heal"
end=$((SECONDS + 20))
until (($(last_n display 'temperature') > before + 2)); do
    ((SECONDS < end)) || fail "nothing published after the heal reached display"
    sleep 0.1
done
echo "   receives what is published after the heal (temperature $(last_n display temperature), cut at $before)"

echo "== docker stop sensor: a goodbye, not a timeout"
start=$(date +%s.%N)
docker stop -t 10 "$(container sensor)" >/dev/null
stopped=$(since "$start")
wait_log root-a 'peer sensor lost: peer shut down \(its goodbye\)' 10 >/dev/null
echo "   sensor stopped in ${stopped} s, root-a got its goodbye"
log_has sensor 'SIGTERM: saying goodbye' || fail "sensor did not handle SIGTERM"
echo "== docker: all checks passed"
