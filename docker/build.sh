#!/usr/bin/env bash
# Builds the `chaski` image (default tag chaski:local) FROM scratch: no registry is needed.
#
#   docker/build.sh [TAG]            the release `chaski` (target/release, built if missing: the
#                                    same binary the README's commands run) plus the C libraries
#                                    it links (the loader, libc, libgcc_s), found with ldd
#   CHASKI_STATIC=1 docker/build.sh  a statically linked `chaski` (a separate release build)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-chaski:local}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root"
if [[ ${CHASKI_STATIC:-} == 1 ]]; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    echo "== building a static chaski for $host"
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
        cargo build --release -p chaski-cli --target "$host" -j2
    cp "target/static/$host/release/chaski" "$ctx/root/chaski"
else
    echo "== the release chaski (cargo build --release -p chaski-cli)"
    cargo build --release -p chaski-cli -j2
    cp target/release/chaski "$ctx/root/chaski"
    # Every library the binary links, at the path the loader looks for it (the loader too).
    if ldd target/release/chaski >/dev/null 2>&1; then
        while read -r lib; do
            mkdir -p "$ctx/root$(dirname "$lib")"
            cp -L "$lib" "$ctx/root$lib"
        done < <(ldd target/release/chaski | grep -oE '/[^ ]+' | sort -u)
    fi
fi
strip "$ctx/root/chaski" 2>/dev/null || true
cp docker/Dockerfile "$ctx/Dockerfile"
echo "== building the image $tag"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null
docker image ls "$tag" --format '{{.Repository}}:{{.Tag}}  {{.Size}}'
