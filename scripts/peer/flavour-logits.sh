#!/usr/bin/env bash
# Forward-pass issue, acceptance "Flavours": for each real GGUF flavour's type mix, a small
# synthetic file (dsv4-mkmodel) run through upstream llama.cpp (scripts/peer/build.sh first) and
# through dsv4 on the same token ids; per-position logits NMSE, bound 1e-3 (and the NMSE over
# the whole logits array, all positions together). dsv4 runs with its
# default --act-quant q8 (upstream's CPU activation rounding: q8_0 / q8_K / bf16 / f16 per weight
# type, the routing weight after the down projection). Beside it, per mix: upstream against
# itself (its token-by-token mode vs its batch mode on the same file), the spread an independent
# summation order alone produces through near-tie router/indexer flips; and dsv4 --act-quant f32
# vs upstream on the copy widened to F32 (both exact: isolates the rounding). nsparks
# (F8_E4M3_B128) is fork-only: upstream refuses it, so dsv4's cpu backend is compared with its
# scalar `ref` backend there, both --act-quant f32. Neither side applies the §9.2/§9.3 simulation.
#
# Usage: scripts/peer/flavour-logits.sh [BIN_DIR]   (default build/release/tools)
# Env: MIXES (default "f32 upstream ds4-q2 ds4-q4 unsloth-ud nsparks"), N_EMBD (256), N_TOK (48).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/release/tools}
PY=${PY:-.venv-test/bin/python}
MIXES=${MIXES:-"f32 upstream ds4-q2 ds4-q4 unsloth-ud nsparks"}
N_EMBD=${N_EMBD:-256}
N_TOK=${N_TOK:-48}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ids=$($PY -c "import numpy as np; r=np.random.default_rng(5); print(','.join(map(str, r.integers(3, 250, $N_TOK))))")
echo "${ids//,/ }" > "$out/toks.txt"
echo "| mix | types | compared with | NMSE max | NMSE median | NMSE all positions | top-1 agreement | max ≤ 1e-3 |"
echo "|---|---|---|---|---|---|---|---|"
# row A.npy B.npy MIX TYPES WITH VERDICT: one table row, A against B (per position and over the
# whole array); VERDICT "check" prints yes/NO for max ≤ 1e-3 and fails on NO, else it is printed
row() {
  $PY - "$@" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
n = ((a - b) ** 2).sum(1) / (b ** 2).sum(1)
ok = n.max() <= 1e-3
verdict = ("yes" if ok else "NO") if sys.argv[6] == "check" else sys.argv[6]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {n.max():.3e} | {np.median(n):.3e} | {((a - b) ** 2).sum() / (b ** 2).sum():.3e} | {(a.argmax(1) == b.argmax(1)).mean():.4f} | {verdict} |")
sys.exit(0 if ok or sys.argv[6] != "check" else 1)
PYEOF
}
status=0
for mix in $MIXES; do
  f="$out/$mix.gguf"
  "$BIN/dsv4-mkmodel" -o "$f" --tokenizer tests/fixtures/tokenizer.json --preset tiny \
    --n-embd "$N_EMBD" --n-ff-exp "$N_EMBD" --mix "$mix" >/dev/null
  "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.ours.npy" \
    --no-official-numerics -t 2 >"$out/$mix.ours.log" 2>&1
  types=$(grep '^types:' "$out/$mix.ours.log" | cut -d' ' -f2- | tr -d '|')
  if build/peer/bin/dump_logits -m "$f" -t "$out/toks.txt" -o "$out/$mix.peer.npy" --mode batch \
       --threads 2 >"$out/$mix.peer.log" 2>&1; then
    other="upstream llama.cpp"
    build/peer/bin/dump_logits -m "$f" -t "$out/toks.txt" -o "$out/$mix.peertok.npy" --mode token \
      --threads 2 >"$out/$mix.peertok.log" 2>&1
    row "$out/$mix.peertok.npy" "$out/$mix.peer.npy" "$mix" "$types" "upstream token-by-token vs upstream batch (upstream's own spread)" "(reference)" || true
    if [ "$mix" != f32 ]; then
      # the same file with every tensor widened exactly to F32: upstream then runs float
      # matmuls without its activation rounding; ours with --act-quant f32 is the exact path too
      scripts/reference/.venv/bin/python scripts/peer/gguf_to_f32.py "$f" "$out/$mix.f32w.gguf" >/dev/null
      build/peer/bin/dump_logits -m "$out/$mix.f32w.gguf" -t "$out/toks.txt" -o "$out/$mix.f32w.npy" \
        --mode batch --threads 2 >"$out/$mix.f32w.log" 2>&1
      "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.ours-f32.npy" \
        --no-official-numerics --act-quant f32 -t 2 >"$out/$mix.ours-f32.log" 2>&1
      row "$out/$mix.ours-f32.npy" "$out/$mix.f32w.npy" "$mix" "$types" "ours --act-quant f32 vs upstream on the F32-widened copy" "(attribution)" || true
    fi
  else
    other="dsv4 ref backend (upstream refuses the file)"
    "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.ours.npy" \
      --no-official-numerics --act-quant f32 -t 2 >"$out/$mix.ours.log" 2>&1
    "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.peer.npy" \
      --no-official-numerics --act-quant f32 --backend ref >"$out/$mix.ref.log" 2>&1
  fi
  row "$out/$mix.ours.npy" "$out/$mix.peer.npy" "$mix" "$types" "$other" check || status=1
done
exit $status
