#!/usr/bin/env bash
# Seeing the mesh with the real tools: a mesh of six nodes (a root and five members, each
# with --http) is scraped by Prometheus itself, whose query API must show every node's
# message counters rising; `promtool check metrics` accepts every node's /metrics; headless
# Chromium loads the root's live page, the DOM it renders must hold every node and link of the
# mesh, its script must have refreshed the page, and the console must stay silent (no script
# error); `chaski graph --dot` is accepted by Graphviz's `dot`. The screenshot, the DOM, the
# SVG and the scrapes are kept under target/observe/ as CI artefacts. Every wait is bounded.
#
# Needs prometheus, promtool, chromium and dot (Debian: apt-get install prometheus chromium
# graphviz; .ci/run installs them). Without them: skipped, or a failure under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/chaski}")
out=target/observe
mkdir -p "$out"
out=$(realpath "$out")

skip() {
    if [[ ${CI:-} == true ]]; then
        echo "FAIL: CI=true and $1" >&2
        exit 1
    fi
    echo "SKIP: $1"
    exit 0
}
for tool in prometheus promtool chromium dot curl; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    exec >&2
    echo "FAIL: $*"
    for f in "$work"/*.log; do
        [[ -f $f ]] || continue
        echo "--- $(basename "$f")"
        tail -8 "$f"
    done
    exit 1
}
# until_ok SECONDS WHAT COMMAND...: runs COMMAND until it succeeds, for at most SECONDS.
until_ok() {
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        ((SECONDS < end)) || fail "$what: not within the deadline"
        sleep 0.2
    done
}
# free_port: a TCP port nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The mesh: a root and five members on loopback, each with its HTTP endpoint.
root_port=$(free_port)
names=(root m1 m2 m3 m4 m5)
http=()
for i in 0 1 2 3 4 5; do http+=("127.0.0.1:$(free_port)"); done
"$bin" root --bind "127.0.0.1:$root_port" --http "${http[0]}" >"$work/root.log" 2>&1 &
pids+=($!)
until_ok 20 "the root's endpoint" curl -fs -o /dev/null "http://${http[0]}/healthz"
for i in 1 2 3 4 5; do
    topic=$((i % 2))
    "$bin" node --bind 127.0.0.1:0 --connect "127.0.0.1:$root_port" --name "m$i" \
        --sub "t$topic" --pub "t$topic" --every 0.2 --discover --keepalive 1 \
        --http "${http[$i]}" >"$work/m$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3 4 5; do
    until_ok 20 "m$i ready" curl -fs -o /dev/null "http://${http[$i]}/readyz"
done
echo "mesh: 6 nodes up, every member ready"

# promtool accepts every node's exposition.
for i in 0 1 2 3 4 5; do
    curl -fsS "http://${http[$i]}/metrics" >"$out/metrics-${names[$i]}.txt"
    promtool check metrics <"$out/metrics-${names[$i]}.txt" || fail "promtool rejects ${names[$i]}'s metrics"
done
echo "promtool: every node's /metrics accepted"

# Prometheus scrapes the six every second; its query API must show each one's counters rise.
prom_port=$(free_port)
{
    echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
    echo "scrape_configs:"
    echo "  - job_name: chaski"
    echo "    static_configs:"
    echo "      - targets: [$(IFS=,; echo "${http[*]}")]"
} >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
until_ok 30 "Prometheus ready" curl -fs -o /dev/null "http://127.0.0.1:$prom_port/-/ready"
# query EXPR: the result vector as "instance value" lines.
query() {
    curl -fsS "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys
for r in json.load(sys.stdin)["data"]["result"]:
    print(r["metric"].get("instance","-"), r["value"][1])'
}
# all_up: Prometheus has scraped all six, and each reports its node.
all_up() { [[ $(query 'up == 1' | wc -l) == 6 && $(query 'chaski_node_info' | wc -l) == 6 ]]; }
until_ok 30 "Prometheus scrapes all six" all_up
first=$(query 'sum by (instance) (chaski_frames_received_total)')
[[ $(wc -l <<<"$first") == 6 ]] || fail "not every node has counters: $first"
# rising: every node's received frames are higher now than in $first.
rising() {
    local now
    now=$(query 'sum by (instance) (chaski_frames_received_total)')
    python3 - "$first" "$now" <<'EOF'
import sys
a = dict(l.split() for l in sys.argv[1].splitlines())
b = dict(l.split() for l in sys.argv[2].splitlines())
sys.exit(0 if len(b) == 6 and all(float(b[k]) > float(a[k]) for k in a) else 1)
EOF
}
until_ok 30 "every node's counters rise in Prometheus" rising
query 'sum by (instance) (chaski_frames_received_total)' >"$out/prometheus-frames.txt"
query 'chaski_rtt_seconds_count' >"$out/prometheus-rtt-count.txt"
echo "prometheus: all 6 scraped, every node's received frames rising:"
sed 's/^/  /' "$out/prometheus-frames.txt"

# The walk: six nodes; the same picture through dot.
"$bin" graph "127.0.0.1:$root_port" --json >"$out/mesh.json"
"$bin" graph "127.0.0.1:$root_port" --svg "$out/mesh.svg" --dot >"$out/mesh.dot"
dot -Tsvg "$out/mesh.dot" >"$out/mesh-dot.svg" || fail "dot rejects chaski graph --dot"
nodes=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["nodes"]))' "$out/mesh.json")
links=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["links"]))' "$out/mesh.json")
[[ $nodes == 6 ]] || fail "chaski graph found $nodes nodes, not 6"
echo "graph: $nodes nodes, $links links; dot accepts the DOT"

# Chromium loads the live page; the DOM after its script ran holds every node and link.
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage
    --enable-logging=stderr --v=0 --virtual-time-budget=5000)
timeout 120 "${chrome[@]}" --dump-dom "http://${http[0]}/" >"$out/page-dom.html" 2>"$work/chromium.log" ||
    fail "chromium could not load the page"
timeout 120 "${chrome[@]}" --window-size=1400,1800 --screenshot="$out/page.png" \
    "http://${http[0]}/" >/dev/null 2>>"$work/chromium.log" || fail "chromium took no screenshot"
[[ -s $out/page.png ]] || fail "no screenshot"
python3 - "$out/page-dom.html" "$out/mesh.json" <<'EOF' || fail "the page does not show the mesh"
import json, re, sys
dom = open(sys.argv[1]).read()
mesh = json.load(open(sys.argv[2]))
ids = set(re.findall(r'<g class="node[^"]*" data-id="([0-9a-f]+)"', dom))
want = {n["id"] for n in mesh["nodes"]}
links = set(re.findall(r'<g class="link[^"]*" data-a="([0-9a-f]+)" data-b="([0-9a-f]+)"', dom))
want_links = {(l["a"], l["b"]) for l in mesh["links"]}
refreshed = re.search(r'data-refreshes="(\d+)"', dom)
problems = []
if ids != want: problems.append(f"nodes on the page {len(ids)}, in the mesh {len(want)}")
if not want_links <= links: problems.append(f"links missing: {want_links - links}")
if not refreshed: problems.append("the page's script never refreshed it")
if problems:
    print("; ".join(problems), file=sys.stderr); sys.exit(1)
print(f"chromium: page with {len(ids)} nodes and {len(links)} links, refreshed {refreshed.group(1)} times by its script")
EOF
if grep -E ':CONSOLE' "$work/chromium.log" >"$work/console.txt"; then
    cat "$work/console.txt" >&2
    fail "the page wrote to the console (a script error?)"
fi
echo "chromium: no console message; screenshot $out/page.png"
echo "observe: PASS"
