#!/usr/bin/env bash
# Builds the `chaski` image (default tag chaski:local): a statically linked `chaski` built on
# this machine, copied into an image FROM scratch. No registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-chaski:local}
host=$(rustc -vV | sed -n 's/^host: //p')
echo "== building a static chaski for $host"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
    cargo build --release -p chaski-cli --target "$host" -j2
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "target/static/$host/release/chaski" "$ctx/chaski"
strip "$ctx/chaski" 2>/dev/null || true
cp docker/Dockerfile "$ctx/Dockerfile"
echo "== building the image $tag"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null
docker image ls "$tag" --format '{{.Repository}}:{{.Tag}}  {{.Size}}'
