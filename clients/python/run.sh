#!/usr/bin/env bash
# Runs the independent Python client (written from PROTOCOL.md, with cbor2 from PyPI): first
# over the document's test vectors, then against a real node that serves `demo`, publishes on
# `py/news`, and pings its idle edges every 0.3 s (dropping them after 2 s of silence); then it
# receives a file sent through a root, fetching one chunk from the sender itself.
#
#   clients/python/run.sh PATH_TO_CHASKI
set -euo pipefail
chaski=$(realpath "$1")
cd "$(dirname "$0")"
venv=${CHASKI_PY_VENV:-/tmp/chaski-py-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check cbor2
"$venv/bin/python" chaski_client.py --vectors ../../PROTOCOL.md | tail -1
port=$((20000 + RANDOM % 20000))
log=$(mktemp)
CHASKI_KEEPALIVE_INTERVAL=0.3 CHASKI_KEEPALIVE_JITTER=0 CHASKI_IDLE_TIMEOUT=2 \
    "$chaski" node --bind "127.0.0.1:$port" --serve --pub py/news --every 0.2 >"$log" 2>&1 &
node=$!
trap 'kill $node 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do
    grep -q listening "$log" && break
    sleep 0.1
done
timeout 60 "$venv/bin/python" chaski_client.py "127.0.0.1:$port" | grep -v '^publish #'

# A file through a root: the client takes it, one chunk from the sender directly.
rport=$((port + 1))
file=$(mktemp)
head -c 300000 /dev/urandom >"$file"
sum=$(sha256sum "$file" | cut -d' ' -f1)
"$chaski" root --bind "127.0.0.1:$rport" >"$log.root" 2>&1 &
root=$!
trap 'kill $node $root 2>/dev/null || true; rm -f "$log" "$log.root" "$file"' EXIT
for _ in $(seq 50); do
    grep -q listening "$log.root" && break
    sleep 0.1
done
timeout 60 "$venv/bin/python" chaski_client.py --file "127.0.0.1:$rport" "$sum" &
client=$!
sleep 0.5
"$chaski" send "127.0.0.1:$rport" py/files "$file" --keep 15 --bind 127.0.0.1:0 >/dev/null &
sender=$!
wait "$client"
kill "$sender" 2>/dev/null || true
