#!/usr/bin/env bash
# Chaski across separate network hosts: Linux network namespaces joined by veth pairs on a
# bridge (needs root and iproute2; skipped with a message otherwise). Runs the `chaski` binary
# given (default target/release/chaski) on each host and asserts: delivery through a root,
# discovery and pairing across hosts, a remote call; a host that vanishes (its link down) is
# noticed; a link brought down and up while traffic flows is noticed and heals, and what is
# published after the heal arrives (times printed); SIGTERM gives a goodbye. Every wait is
# bounded; hosts, links and processes are removed however the test ends. A 256 MiB file goes
# through a root to two hosts, one of them cut mid-transfer: both end with the source's SHA-256.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/chaski}")
# skip WHY: without root or namespaces this test cannot run; under CI=true that is a failure
# (CI machines have both), never a silent pass.
skip() {
    if [[ ${CI:-} == true ]]; then
        echo "FAIL: CI=true and $1" >&2
        exit 1
    fi
    echo "SKIP: $1"
    exit 0
}
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
    skip "the network-namespace test needs root and iproute2"
fi
p="chx$$"
if ! ip netns add "${p}probe" 2>/dev/null; then
    skip "network namespaces are not available here"
fi
ip netns del "${p}probe"
logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for i in 1 2 3 4 5 6 7 8 9; do ip netns del "${p}h$i" 2>/dev/null || true; done
    ip link del "${p}br" 2>/dev/null || true
    iptables -D FORWARD -i "${p}br" -o "${p}br" -j ACCEPT 2>/dev/null || true
    rm -rf "$logs"
}
trap cleanup EXIT

fail() {
    exec >&2
    echo "FAIL: $*"
    for f in "$logs"/*.log; do
        echo "--- $(basename "$f") (without its message lines)"
        grep -vE '^(\[|call demo)' "$f" | tail -15
    done
    exit 1
}
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# log HOST: the host's log file (a missing one fails the test, never reads as empty).
log() { [[ -f $logs/$1.log ]] || fail "no log for $1"; echo "$logs/$1.log"; }
# count HOST PATTERN: lines of the log matching PATTERN (0 only when none match).
count() { local f; f=$(log "$1"); grep -cE -- "$2" "$f" || true; }
# wait_log HOST PATTERN SECONDS: waits for the pattern in the host's log; prints the wait (s).
wait_log() {
    local start f end=$((SECONDS + $3))
    start=$(date +%s.%N)
    f=$(log "$1")
    until grep -qE -- "$2" "$f"; do
        ((SECONDS < end)) || fail "no '$2' in $1's log within $3 s"
        sleep 0.05
    done
    since "$start"
}
# last_n HOST WORD: the number after the last "WORD <n>" in the log (0 if there is none).
last_n() {
    local f n
    f=$(log "$1")
    n=$(grep -oE -- "$2 [0-9]+" "$f" | tail -1 | grep -oE '[0-9]+$' || true)
    echo "${n:-0}"
}

ip link add "${p}br" type bridge
ip link set "${p}br" up
# Bridged frames may pass the host's firewall (Docker's FORWARD policy is DROP).
iptables -I FORWARD -i "${p}br" -o "${p}br" -j ACCEPT 2>/dev/null || true
for i in 1 2 3 4 5 6 7 8 9; do
    ip netns add "${p}h$i"
    ip link add "${p}v$i" type veth peer name eth0 netns "${p}h$i"
    ip link set "${p}v$i" master "${p}br" up
    ip -n "${p}h$i" addr add "10.77.0.$i/24" dev eth0
    ip -n "${p}h$i" link set eth0 up
    ip -n "${p}h$i" link set lo up
done
# run HOST NAME ARGS...: the node NAME on host HOST, its output in NAME.log.
run() {
    local host=$1 name=$2
    shift 2
    CHASKI_KEEPALIVE_INTERVAL=1 CHASKI_IDLE_TIMEOUT=3 \
        ip netns exec "${p}h$host" "$bin" "$@" >"$logs/$name.log" 2>&1 &
    pids+=($!)
    eval "pid_$name=$!"
}
root=10.77.0.1:8511
run 1 root root --name root
run 2 sensor node --name sensor --connect "$root" --pub sensors --every 0.2 --message "temperature {seq}"
run 3 display node --name display --connect "$root" --sub sensors --discover
run 4 service node --name service --connect "$root" --serve
run 5 client node --name client --connect 10.77.0.4:8511 --call --every 0.5
run 6 display2 node --name display2 --connect "$root" --sub sensors --discover
# A second root joined to the first; a publisher and a subscriber that use both roots.
run 7 root2 root --name root2 --connect "$root"
run 8 logger node --name logger --connect "$root,10.77.0.7:8511" --sub alerts
run 9 alerts node --name alerts --connect "$root,10.77.0.7:8511" --pub alerts --every 0.2 --message "alert {seq}"

# A secure mesh beside it (TLS, one cluster CA) on other ports: root on host 1, publisher on
# host 2, subscriber on host 3 (whose link is cut and healed below).
"$bin" ca init "$logs/ca" >/dev/null
for n in sroot spub ssub; do "$bin" cert issue "$n" --ca "$logs/ca" --out "$logs/$n" >/dev/null; done
"$bin" ca init "$logs/other-ca" >/dev/null
"$bin" cert issue outsider --ca "$logs/other-ca" --out "$logs/outsider" >/dev/null
sroot=10.77.0.1:8611
run 1 sroot root --bind 0.0.0.0:8611 --tls-dir "$logs/sroot"
run 2 spub node --bind 0.0.0.0:8612 --connect "$sroot" --pub secure --every 0.2 \
    --message "secret {seq}" --tls-dir "$logs/spub"
run 3 ssub node --bind 0.0.0.0:8612 --connect "$sroot" --sub secure --tls-dir "$logs/ssub"

echo "== netns: nine hosts on a bridge (10.77.0.1-9)"
wait_log display '^\[sensors\] temperature' 30 >/dev/null
echo "   display receives sensors through the root"
wait_log display 'paired for sensors' 30 >/dev/null
wait_log display2 'paired for sensors' 30 >/dev/null
end=$((SECONDS + 30))
until (($(count display 'peer display2 connected') + $(count display2 'peer display connected') > 0)); do
    ((SECONDS < end)) || fail "display and display2 have no edge to each other"
    sleep 0.05
done
echo "   display and display2 discovered each other and paired across hosts"
wait_log client '^call demo.add\([0-9]+, [0-9]+\) = ' 30 >/dev/null
echo "   client's calls to service answered across hosts"

echo "== the secure mesh across hosts (TLS 1.3, mutual authentication)"
wait_log ssub '^\[secure\] secret' 30 >/dev/null
echo "   ssub receives spub's messages through the secure root"
set +e
ip netns exec "${p}h4" "$bin" pub "$sroot" secure plain >"$logs/plainpub.log" 2>&1
plain_code=$?
ip netns exec "${p}h4" "$bin" pub "$sroot" secure forged --tls-dir "$logs/outsider" \
    >"$logs/outsider.log" 2>&1
outsider_code=$?
set -e
((plain_code == 6)) && grep -q "TLS only" "$logs/plainpub.log" ||
    fail "a plaintext publisher to the secure root: exit $plain_code"
((outsider_code == 6)) || fail "a publisher with another CA's certificate: exit $outsider_code"
grep -qE 'plain|forged' "$logs/ssub.log" && fail "a stranger's message reached ssub"
echo "   a plaintext peer and another CA's certificate are refused (exit 6, reason given)"

echo "== a 256 MiB file through a root to hosts 4 and 5; host 5's link cut mid-transfer"
head -c $((256 << 20)) /dev/urandom >"$logs/big.bin"
src_sum=$(sha256sum "$logs/big.bin" | cut -d' ' -f1)
mkdir "$logs/in4" "$logs/in5"
froot=10.77.0.1:8711
run 1 froot root --bind 0.0.0.0:8711
run 4 frecv4 receive "$froot" files --dir "$logs/in4" --count 1 --bind 0.0.0.0:8712
run 5 frecv5 receive "$froot" files --dir "$logs/in5" --count 1 --bind 0.0.0.0:8712
wait_log frecv4 'receiving files' 20 >/dev/null
wait_log frecv5 'receiving files' 20 >/dev/null
# Host 5's link slowed (when tc can), so that the cut surely falls in the middle.
shaped=false
if tc qdisc add dev "${p}v5" root tbf rate 400mbit burst 256kb latency 400ms 2>/dev/null; then
    shaped=true
fi
start=$(date +%s.%N)
run 2 fsend send "$froot" files "$logs/big.bin" --keep 60 --bind 0.0.0.0:8713
# Cut once host 5 has part of the file (the temporary file past 16 MiB), before it has all.
end=$((SECONDS + 60))
until (($(stat -c %s "$logs"/in5/.chaski-*.part 2>/dev/null | head -1 || echo 0) > (16 << 20))); do
    ((SECONDS < end)) || fail "host 5 received nothing of the file within 60 s"
    sleep 0.02
done
had=$(stat -c %s "$logs"/in5/.chaski-*.part 2>/dev/null | head -1 || echo 0)
ip link set "${p}v5" down
sleep 3
ip link set "${p}v5" up
echo "   host 5 cut for 3 s with $((had >> 20)) MiB of 256 written (link shaped: $shaped)"
$shaped && tc qdisc del dev "${p}v5" root 2>/dev/null || true
for h in frecv4 frecv5; do
    wait_log "$h" '^received ' 120 >/dev/null
done
took=$(since "$start")
for h in 4 5; do
    got=$(sha256sum "$logs/in$h/big.bin" | cut -d' ' -f1)
    [[ $got == "$src_sum" ]] || fail "host $h's file has SHA-256 $got, the source $src_sum"
    grep -q "sha256 $src_sum" "$logs/frecv$h.log" || fail "host $h did not report the source's SHA-256"
done
leftover=$(find "$logs/in4" "$logs/in5" -name '.chaski-*' | wc -l)
((leftover == 0)) || fail "temporary files left behind: $leftover"
echo "   both hosts have the file with the source's SHA-256 ($took s from the send)"
peaks=""
for n in froot fsend; do
    pid_var="pid_$n"
    kb=$(awk '/^VmHWM/ { print $2 }' "/proc/${!pid_var}/status" 2>/dev/null || echo 0)
    ((kb < 160 * 1024)) || fail "$n peaked at $((kb >> 10)) MiB of memory for a 256 MiB file"
    peaks+=" $n $((kb >> 10)) MiB;"
done
echo "   peak resident memory:$peaks (the file is never held whole)"
kill "$pid_fsend" "$pid_froot" 2>/dev/null || true

echo "== host 6 vanishes (its link goes down)"
ip link set "${p}v6" down
took=$(wait_log root 'peer display2 lost' 20)
echo "   the root noticed the lost host after $took s"

echo "== display's link down for 3 s while sensor publishes, then up"
ups=$(count display 'peer root connected')
ip link set "${p}v3" down
took=$(wait_log display 'peer root lost' 20)
echo "   display noticed the cut after $took s"
before=$(last_n display temperature)
sleep 3
ip link set "${p}v3" up
start=$(date +%s.%N)
end=$((SECONDS + 40))
until (($(count display 'peer root connected') > ups)); do
    ((SECONDS < end)) || fail "display did not reconnect within 40 s of the heal"
    sleep 0.05
done
echo "   edge back $(since "$start") s after the link came up"
end=$((SECONDS + 20))
until (($(last_n display temperature) > before + 2)); do
    ((SECONDS < end)) || fail "nothing published after the heal reached display"
    sleep 0.05
done
echo "   display receives what is published after the heal (temperature $(last_n display temperature), cut at $before)"
end=$((SECONDS + 40))
secret_before=$(last_n ssub secret)
until (($(last_n ssub secret) > secret_before + 2)); do
    ((SECONDS < end)) || fail "the secure subscriber on the cut host did not heal"
    sleep 0.05
done
echo "   the secure subscriber on the same host healed too (secret $(last_n ssub secret))"

echo "== SIGTERM to sensor: a goodbye"
kill -TERM "$pid_sensor"
wait_log root 'peer sensor lost: peer shut down \(its goodbye\)' 10 >/dev/null
wait_log sensor 'SIGTERM: saying goodbye' 5 >/dev/null
echo "   the root got sensor's goodbye"
echo "== the first root is killed: the mesh goes on through the second"
wait_log logger '^\[alerts\] alert' 10 >/dev/null
kill -9 "$pid_root"
wait "$pid_root" 2>/dev/null || true
start=$(date +%s.%N)
wait_log logger 'peer root lost' 10 >/dev/null
before=$(last_n logger alert)
end=$((SECONDS + 20))
until (($(last_n logger alert) > before + 5)); do
    ((SECONDS < end)) || fail "logger stopped receiving alerts when one of its two roots died"
    sleep 0.05
done
echo "   logger still receives alerts $(since "$start") s after the kill (alert $(last_n logger alert))"
dups=$(grep -oE '^\[alerts\] alert [0-9]+' "$logs/logger.log" | sort | uniq -d | wc -l)
((dups == 0)) || fail "logger got $dups alerts twice (two roots, one copy each)"
echo "   no alert delivered twice through the two roots"
echo "== netns: all checks passed"
