#!/usr/bin/env bash
# bench/compare-llama-cpp.sh: dsv4-bench side by side with upstream llama.cpp's llama-bench on
# the same synthetic DeepSeek-V4 GGUFs, same threads and batch sizes, alternating A B B A A B …
# (issue 7, scope 2-3; docs/design.md §5). Prints ours/theirs per test with a 95% interval and
# runs a logits correctness guard (NMSE ours vs upstream) on every file.
#
# Usage: bench/compare-llama-cpp.sh            (everything per the env below)
#        FILES=small MIXES="upstream ds4-q2" DEPTHS=0 ROUNDS=3 bench/compare-llama-cpp.sh
#
# Env (defaults in brackets):
#   FILES     dsv4-mkmodel presets                       [small flash-2l]
#   MIXES     dsv4-mkmodel --mix values                  [upstream ds4-q2]
#   ROUNDS    A/B rounds per file                        [5]
#   REPS      repetitions per engine per round (-r)      [2]
#   THREADS   -t for both engines                        [nproc]
#   PP TG     prompt size / generation length            [512 / 128]
#   DEPTHS    comma list of depths (-d)                  [0,4096]
#   B UB      -b / -ub for both engines                  [2048 / 512]
#   GUARD     1: run the logits guard, 0: skip           [1]
#   GUARD_N   guard prompt length (tokens)               [160: covers one HCA row (ratio 128)]
#   NMSE_MAX  guard bound                                [1e-3]
#   KEEP      1: keep build/bench-models/*.gguf          [0: each file deleted after its cell]
#   OUT       output directory                           [build/bench-compare/<UTC timestamp>]
#   BUILD     our CMake build dir (dsv4-bench, dsv4-cli, dsv4-mkmodel) [build/h-bench]
#   NO_BUILD  1: use the binaries as they are            [0]
#
# Interval: per round i, x_i = ours' mean t/s, y_i = theirs' mean t/s (each over REPS runs).
# The figure is the ratio of means R = mean(x)/mean(y); its 95% interval is Fieller's for a ratio
# of paired means (rounds are the units, t quantile with ROUNDS−1 degrees of freedom, the
# covariance of x and y across rounds included). It needs ROUNDS ≥ 2; with few rounds the t
# quantile is large (ROUNDS=3: t=4.30) so intervals are wide. Unbounded when the denominator is
# not significantly different from 0 (printed as "unbounded"). Beside it, a second interval
# from every individual run (ROUNDS × REPS per engine, unpaired): delta method on log R with
# Welch's degrees of freedom; tighter, but it ignores the pairing of A and B within a round.
#
# Time plan (2-core AMD EPYC, 23 GB RAM; one cell = one file × one mix; PP=512 TG=128):
#   small, MEASURED 2026-11-30 (DEPTHS=0,4096, REPS=3, load average 3-7 from other builds):
#     make ≈ 6 s; guard ≈ 8 s; one round (llama-bench + dsv4-bench, warm-up + 3 reps each of
#     pp512, tg128 at d0 and d4096, each engine building d4096 once) ≈ 2.6 min for `upstream`
#     (llama.cpp tg ≈ 15-25 t/s on its BF16 head) and ≈ 0.8 min for `ds4-q2`.
#     Default ROUNDS=5 REPS=2: ≈ 5 × (2.0 + 0.6) ≈ 13 min for both mixes.
#   flash-2l, MEASURED 2026-11-30 (session 3, ROUNDS=5 REPS=1 TG=32, DEPTHS=0,4096, KEEP=1):
#     make ≈ 1.1-1.6 min per file (once, kept); guard ≈ 1 min; one round ≈ 2.3 min for
#     `upstream` (llama-bench ≈ 1.3 min incl. its d4096 build, dsv4-bench ≈ 1.0 min) and ≈ 1.8 min
#     for `ds4-q2` → 5 rounds: ≈ 12 min + ≈ 10 min = ≈ 22 min for both mixes (10:29-10:51 UTC).
#   small with session 3's engine, MEASURED: ROUNDS=5 REPS=2 ≈ 4 min for both mixes.
#   One hour: run the two files separately: small (defaults, ≈ 4 min) and
#     FILES=flash-2l ROUNDS=5 REPS=1 TG=32 KEEP=1 (≈ 22 min + ≈ 3 min making the files): ≈ 30 min.
#   MEASURED 2026-11-30 (session 6, the full comparison in under the hour, commit 827da07):
#     small ROUNDS=5 REPS=2 TG=128: 3 min (18:11-18:14 UTC), then
#     FILES=flash-2l ROUNDS=8 REPS=1 TG=128 KEEP=1 (files already made): 45 min (18:14-18:59 UTC;
#     upstream 25 min incl. its guard, ds4-q2 19 min) → 48 min for both files and both mixes.
#   MEASURED again (session 7, commit 0b5fb3d, the same two commands): small 3 min (21:29-21:32),
#     flash-2l 41 min (21:32-22:13) → 44 min.
#   Run flash-2l only on an otherwise idle machine; with others compiling, numbers are noisy.
#   The tg cells of flash-2l are at the memory bus for both engines; for a tighter pairing of them
#   see bench/pair-bench.py (both models loaded, runs seconds apart).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
FILES="${FILES:-small flash-2l}"
MIXES="${MIXES:-upstream ds4-q2}"
ROUNDS="${ROUNDS:-5}"
REPS="${REPS:-2}"
THREADS="${THREADS:-$(nproc)}"
PP="${PP:-512}"
TG="${TG:-128}"
DEPTHS="${DEPTHS:-0,4096}"
B="${B:-2048}"
UB="${UB:-512}"
GUARD="${GUARD:-1}"
GUARD_N="${GUARD_N:-160}"
NMSE_MAX="${NMSE_MAX:-1e-3}"
KEEP="${KEEP:-0}"
BUILD="${BUILD:-$ROOT/build/h-bench}"
NO_BUILD="${NO_BUILD:-0}"
OUT="${OUT:-$ROOT/build/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}"
MODELS="$ROOT/build/bench-models"
TOKJSON="$ROOT/third_party/tokenizer/deepseek-v4/tokenizer.json"
PEER_BIN="$ROOT/build/peer/build/bin"
DUMP_LOGITS="$ROOT/build/peer/bin/dump_logits"

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

mkdir -p "$OUT" "$MODELS"

# ---- binaries
if [[ ! -x "$PEER_BIN/llama-bench" || ! -x "$DUMP_LOGITS" ]]; then
    log "building the pinned upstream (scripts/peer/build.sh)"
    "$ROOT/scripts/peer/build.sh"
fi
if [[ "$NO_BUILD" != 1 ]]; then
    if [[ ! -f "$BUILD/build.ninja" ]]; then
        cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
              -DDSV4_SKIP_TEST_DIRS="runtime;server;support" >&2
    fi
    ninja -C "$BUILD" -j"${JOBS:-2}" dsv4-bench dsv4-cli dsv4-mkmodel >&2
fi
OURS_BENCH="$BUILD/tools/dsv4-bench"
OURS_CLI="$BUILD/tools/dsv4-cli"
MKMODEL="$BUILD/tools/dsv4-mkmodel"
for x in "$OURS_BENCH" "$OURS_CLI" "$MKMODEL" "$PEER_BIN/llama-bench" "$DUMP_LOGITS"; do
    [[ -x "$x" ]] || { echo "missing $x" >&2; exit 1; }
done

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "params: FILES='$FILES' MIXES='$MIXES' ROUNDS=$ROUNDS REPS=$REPS THREADS=$THREADS PP=$PP TG=$TG DEPTHS=$DEPTHS B=$B UB=$UB GUARD_N=$GUARD_N"
} | tee "$OUT/env.txt" >&2

# Fixed guard prompt: GUARD_N ids spread over the vocabulary (deterministic, < 129280).
python3 - "$GUARD_N" > "$OUT/guard_ids.txt" <<'EOF'
import sys
n = int(sys.argv[1])
print(",".join(str((1 + 7919 * i) % 129280) for i in range(n)))
EOF

PY=python3
[[ -x "$ROOT/scripts/reference/.venv/bin/python" ]] && PY="$ROOT/scripts/reference/.venv/bin/python"  # numpy: faster

# Ours for the guard: dsv4-cli --ids … --all-logits (logits of every position).
run_theirs() {  # run_theirs CELL FILE ROUND
    log "$1 round $3/$ROUNDS: llama-bench"
    "$PEER_BIN/llama-bench" -m "$2" -p "$PP" -n "$TG" -d "$DEPTHS" -r "$REPS" -t "$THREADS" \
        -b "$B" -ub "$UB" -o json > "$OUT/$1.theirs.$3.json" 2> "$OUT/$1.theirs.$3.log"
}

run_ours() {  # run_ours CELL FILE ROUND (round 1 also measures the machine's bandwidth)
    local stream=--no-stream
    [[ $3 == 1 ]] && stream=""
    log "$1 round $3/$ROUNDS: dsv4-bench"
    "$OURS_BENCH" -m "$2" -p "$PP" -n "$TG" -d "$DEPTHS" -r "$REPS" -t "$THREADS" \
        -b "$B" -ub "$UB" -o json $stream > "$OUT/$1.ours.$3.json" 2> "$OUT/$1.ours.$3.log"
}

ours_logits() {  # ours_logits FILE OUT.npy [extra args]
    local f="$1" out="$2"; shift 2
    "$OURS_CLI" -m "$f" --ids "$(cat "$OUT/guard_ids.txt")" -n 0 --all-logits --dump-logits "$out" \
        --temp 0 -t "$THREADS" -c $((GUARD_N + 16)) "$@"
}
GUARD_TOOL=dsv4-cli

GUARD_FAIL=0
: > "$OUT/guard.txt"
for preset in $FILES; do
    for mix in $MIXES; do
        cell="$preset-$mix"
        f="$MODELS/$cell.gguf"
        if [[ ! -f "$f" ]]; then
            log "making $f"
            avail_gb=$(df -BG --output=avail "$MODELS" | tail -1 | tr -dc 0-9)
            if [[ "$preset" == flash* && "$avail_gb" -lt 20 ]]; then
                echo "only ${avail_gb} GB free: not making $f" >&2; exit 1
            fi
            "$MKMODEL" --tokenizer "$TOKJSON" --preset "$preset" --mix "$mix" -o "$f" >&2
        fi
        log "$cell: $(du -h "$f" | cut -f1)"

        # ---- correctness guard: logits of the fixed prompt, every position, both engines
        # Upstream stores KV unrounded (f32 here) and skips the §9.2/§9.3 FP8/FP4 simulation, so
        # the like-for-like comparison is ours with --no-official-numerics ("raw"); the distance
        # of our default (official numerics) is reported beside it. Verdict: median per-position
        # NMSE of raw ≤ NMSE_MAX.
        if [[ "$GUARD" == 1 ]]; then
            tr ',' ' ' < "$OUT/guard_ids.txt" > "$OUT/$cell.guard_ids.txt"
            "$DUMP_LOGITS" -m "$f" -t "$OUT/$cell.guard_ids.txt" -o "$OUT/$cell.theirs.npy" --mode batch \
                --threads "$THREADS" > "$OUT/$cell.dump_logits.log" 2>&1
            ours_logits "$f" "$OUT/$cell.ours-raw.npy" --no-official-numerics > "$OUT/$cell.ours-raw.log" 2>&1
            ours_logits "$f" "$OUT/$cell.ours-official.npy" > "$OUT/$cell.ours-official.log" 2>&1
            read -r med p95 mx amx glob n <<< "$($PY "$HERE/guard_nmse.py" "$OUT/$cell.ours-raw.npy" "$OUT/$cell.theirs.npy")"
            read -r med2 p952 mx2 amx2 glob2 _ <<< "$($PY "$HERE/guard_nmse.py" "$OUT/$cell.ours-official.npy" "$OUT/$cell.theirs.npy")"
            verdict=$(python3 -c "import math; v=float('$med'); print('PASS' if not math.isnan(v) and v <= $NMSE_MAX else 'FAIL')")
            [[ "$verdict" == PASS ]] || GUARD_FAIL=1
            echo "$cell: $n positions; raw numerics: NMSE per position median $med, p95 $p95, max $mx (pos $amx), all positions $glob → $verdict (median ≤ $NMSE_MAX); official numerics: median $med2, p95 $p952, max $mx2 (pos $amx2), all $glob2" \
                | tee -a "$OUT/guard.txt" >&2
            rm -f "$OUT/$cell.ours-raw.npy" "$OUT/$cell.ours-official.npy" "$OUT/$cell.theirs.npy"
        fi

        # ---- A B B A A B …: the engine that runs first alternates from round to round, so a
        # drift of the machine (bandwidth phases, page cache) does not favour either side
        for ((r = 1; r <= ROUNDS; r++)); do
            if ((r % 2 == 1)); then run_theirs "$cell" "$f" "$r"; run_ours "$cell" "$f" "$r"
            else run_ours "$cell" "$f" "$r"; run_theirs "$cell" "$f" "$r"; fi
        done
        if [[ "$KEEP" != 1 ]]; then
            rm -f "$f"
            log "deleted $f (KEEP=1 keeps it)"
        fi
    done
done

# ---- analysis
python3 "$HERE/compare_analyze.py" "$OUT" | tee "$OUT/summary.md"
if [[ "$GUARD" == 1 ]]; then
    echo
    echo "Correctness guard (ours: $GUARD_TOOL; upstream: build/peer/bin/dump_logits --mode batch, f32 KV; $GUARD_N fixed ids):"
    sed 's/^/- /' "$OUT/guard.txt"
fi | tee -a "$OUT/summary.md"
echo "raw outputs: $OUT" >&2
exit "$GUARD_FAIL"
