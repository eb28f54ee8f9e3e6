#!/usr/bin/env bash
# Builds the `fuzz` preset (clang + libFuzzer + ASan/UBSan) and runs every fuzz target for
# SECONDS each (default 600) on its corpus. New coverage is merged into tests/fuzz/corpus/<t>/;
# crashers are copied there as crash-* so CI replays them as regression tests.
# Record each run's summary in tests/fuzz/RESULTS.md (the script appends it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)"
for bin in build/fuzz/tests/fuzz/fuzz_*; do
  t=${bin##*/fuzz_}
  corpus=tests/fuzz/corpus/$t
  work=build/fuzz/work/$t
  mkdir -p "$work/new" "$work/artifacts"
  echo "==> fuzz_$t for ${SECONDS_PER_TARGET}s"
  set +e
  "$bin" "$work/new" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=1048576 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 2>"$work/log.txt"
  rc=$?
  set -e
  tail -n 20 "$work/log.txt"
  for c in "$work"/artifacts/crash-* "$work"/artifacts/leak-* "$work"/artifacts/timeout-*; do
    [ -e "$c" ] && cp "$c" "$corpus/" && echo "kept regression input $corpus/${c##*/}"
  done
  # keep the corpus small: merge new coverage only
  "$bin" -merge=1 "$corpus" "$work/new" >/dev/null 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$work/log.txt" | tail -1 || echo "cov: ?")
  {
    echo "| $(date -u +%F) | fuzz_$t | ${SECONDS_PER_TARGET}s | $execs execs | $cov | exit $rc | $(git rev-parse --short HEAD) |"
  } >> tests/fuzz/RESULTS.md
done
