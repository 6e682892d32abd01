#!/usr/bin/env bash
# Builds the cargo-fuzz targets on the stable toolchain and runs each for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# The flags are those `cargo fuzz build -s none` passes (SanitizerCoverage for libFuzzer);
# RUSTC_BOOTSTRAP=1 lets a stable rustc accept them. With cargo-fuzz and a nightly toolchain,
# `cargo fuzz run node_inputs` works too. The committed seed corpus (corpus/TARGET) is read;
# new inputs go to a scratch directory; a crash, or an input that runs over 10 s (-timeout), is saved
# under artifacts/TARGET and fails the run. The target bodies live in ../fuzz-targets (a workspace member),
# so `cargo test` replays the committed corpus through them.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decoder message_decode node_inputs secure_inputs)
fi
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release -j2 --bins --target "$host" --target-dir target
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    scratch=$(mktemp -d)
    log="$scratch.log"
    echo "== fuzz $t for ${secs}s"
    status=0
    "target/$host/release/$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" "$scratch" "corpus/$t" >"$log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "fuzz target $t failed (exit $status); the input is in fuzz/artifacts/$t" >&2
        rm -rf "$scratch" "$log"
        exit 1
    fi
    rm -rf "$scratch" "$log"
done
