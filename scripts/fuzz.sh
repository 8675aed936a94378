#!/usr/bin/env bash
# Run each fuzz target with libFuzzer (cargo-fuzz, nightly) for SECONDS (default 60)
# and print its executions and coverage. New inputs go to fuzz/corpus/<target>/, which
# `cargo test -p annal-fuzz` replays on stable in every CI run; a crash is written to
# fuzz/artifacts/<target>/ and becomes a corpus file once fixed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_FORK=2 scripts/fuzz.sh 3600 engine_ops     # two worker processes
#
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decode commit_decode payload_decode snapshot_decode snapshot_sections http_body filter_parse keyword_query engine_ops)
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="target/fuzz-$t.log"
  build=()
  flags=()
  if [ "$t" = engine_ops ]; then
    # engine_ops checks the engine's logic against a model, so it runs without ASan:
    # each input starts a dozen engine threads, and ASan's per-thread shadow and fake
    # stacks (mapped and unmapped per thread) made it several times slower. Its own
    # build directory keeps the other targets' ASan build. No entropic scheduler: its
    # rare-feature bookkeeping over ~45,000 features took half the time.
    build=(-s none --target-dir target/fuzz-plain)
    flags=(-entropic=0)
  fi
  if [ -n "${FUZZ_FORK:-}" ]; then
    # FUZZ_FORK=N: N worker processes (libFuzzer's fork mode), one per core.
    flags+=(-fork="$FUZZ_FORK")
  fi
  # One worker by default, the machine's other core stays free; -rss_limit for FAISS's
  # allocations.
  cargo +nightly fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=4096 -timeout=30 "${flags[@]}" >"$log" 2>&1 || {
    echo "$t: FAILED (see $log and fuzz/artifacts/$t/)"
    tail -30 "$log"
    exit 1
  }
  # A single worker prints its final stats; fork mode prints "#N: cov: ..." lines.
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ -z "$execs" ]; then
    execs=$(grep -o '^#[0-9]*: cov' "$log" | grep -o '[0-9]*' | tail -1)
  fi
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "$t: ${execs:-?} executions in ${secs} s, ${cov:-cov: ?}, corpus $(ls "fuzz/corpus/$t" | wc -l) files"
done
