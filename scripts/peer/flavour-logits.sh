#!/usr/bin/env bash
# Forward-pass issue, acceptance "Flavours": for each real GGUF flavour's type mix, a small
# synthetic file (dsv4-mkmodel) run through upstream llama.cpp (scripts/peer/build.sh first) and
# through dsv4 on the same token ids; per-position logits NMSE, bound 1e-3 (and the NMSE over
# the whole logits array, all positions together). dsv4 runs with its
# default --act-quant q8 (upstream's CPU activation rounding: q8_0 / q8_K / bf16 / f16 per weight
# type, the routing weight after the down projection). Beside it, per mix: upstream against
# itself (its token-by-token mode vs its batch mode on the same file), the spread an independent
# summation order alone produces through near-tie router/indexer flips; and dsv4 --act-quant f32
# vs upstream on the copy widened to F32 (both exact: isolates the rounding); dsv4's scalar kernels
# vs its default SIMD level (dsv4 against itself: another float order); and dsv4 with the
# routers' and the indexer's discrete choices taken from upstream (dsv4-cli --force-selections,
# upstream's choices captured from its graph) wherever the two engines chose differently, each
# such choice checked to be each engine's own top-k of its own scores (scripts/peer/forced_choices.py;
# second table, with the margins: how near the tie was). Exit status: 1 when a checked row's NMSE
# over the whole logits array exceeds 1e-3 or a choice is not its engine's own top-k; the
# per-position maximum is printed beside it (issue 5's stricter reading, not met: see
# docs/agreement-flavours.md). nsparks
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
echo "| mix | types | compared with | NMSE max | NMSE median | NMSE all positions | top-1 agreement | max ≤ 1e-3 | all positions ≤ 1e-3 |" > "$out/table1"
echo "|---|---|---|---|---|---|---|---|---|" >> "$out/table1"
echo "| mix | choice | layer | position | ours | upstream's | upstream's margin | our margin | score NMSE there | layer median | own top-k both |" > "$out/table2"
echo "|---|---|---|---|---|---|---|---|---|---|---|" >> "$out/table2"
# row A.npy B.npy MIX TYPES WITH VERDICT: one table row, A against B (per position and over the
# whole array); VERDICT "check" prints yes/NO for max ≤ 1e-3 and for all positions ≤ 1e-3 and
# fails when the latter is NO, "report" prints both without failing, anything else is printed as
# it is in both columns
row() {
  $PY - "$@" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
n = ((a - b) ** 2).sum(1) / (b ** 2).sum(1)
whole = ((a - b) ** 2).sum() / (b ** 2).sum()
yn = lambda ok: "yes" if ok else "NO"
v1, v2 = ((yn(n.max() <= 1e-3), yn(whole <= 1e-3)) if sys.argv[6] in ("check", "report") else (sys.argv[6],) * 2)
print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {n.max():.3e} | {np.median(n):.3e} | {whole:.3e} | {(a.argmax(1) == b.argmax(1)).mean():.4f} | {v1} | {v2} |")
sys.exit(0 if whole <= 1e-3 or sys.argv[6] != "check" else 1)
PYEOF
} >> "$out/table1"
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
    other="upstream llama.cpp, each engine's own choices"
    # upstream's choices: the same batch run with its router scores and argsort and the
    # indexer's scores and top-k captured from the graph (the logits must not change)
    build/peer/bin/dump_logits -m "$f" -t "$out/toks.txt" -o "$out/$mix.peercap.npy" --mode batch \
      --threads 2 --dump-topk "$out/$mix.up" --dump-tensors ffn_moe_argsort,ffn_moe_probs_biased \
      --dump-prefix "$out/$mix.up" >"$out/$mix.peercap.log" 2>&1
    cmp -s "$out/$mix.peer.npy" "$out/$mix.peercap.npy" || { echo "$mix: upstream's logits change under capture" >&2; exit 1; }
    n_used=$(grep -o '([0-9]* used)' "$out/$mix.ours.log" | tr -dc 0-9)
    $PY - "$out/$mix.up" "$n_used" <<'PYEOF'
import glob, re, sys, numpy as np
for f in glob.glob(sys.argv[1] + ".ffn_moe_argsort-*.0.npy"):
    il = int(re.search(r"argsort-(\d+)\.0\.npy$", f).group(1))
    a = np.load(f)
    np.save(f"{sys.argv[1]}.L{il}.experts.npy", a.reshape(-1, a.shape[-1])[:, : int(sys.argv[2])].astype(np.int32))
PYEOF
    "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.forced.npy" \
      --no-official-numerics -t 2 --force-selections "$out/$mix.up" --dump-intermediates "$out/$mix.forced.tsv" \
      >"$out/$mix.forced.log" 2>&1
    $PY scripts/peer/forced_choices.py "$mix" "$out/$mix.forced.log" "$out/$mix.forced.tsv" "$out/$mix.up" \
      >> "$out/table2" || status=1
    build/peer/bin/dump_logits -m "$f" -t "$out/toks.txt" -o "$out/$mix.peertok.npy" --mode token \
      --threads 2 >"$out/$mix.peertok.log" 2>&1
    row "$out/$mix.peertok.npy" "$out/$mix.peer.npy" "$mix" "$types" "upstream token-by-token vs upstream batch (upstream's own spread)" "(reference)" || true
    # dsv4 against itself: the portable scalar kernels (another float order, the same rounding
    # rules) vs the default SIMD level
    DSV4_SIMD=scalar "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.scalar.npy" \
      --no-official-numerics -t 2 >"$out/$mix.scalar.log" 2>&1
    level=$(grep -o 'cpu\[[a-z0-9]*\]' "$out/$mix.ours.log" | head -1)
    row "$out/$mix.scalar.npy" "$out/$mix.ours.npy" "$mix" "$types" "dsv4 cpu[scalar] vs dsv4 $level (dsv4's own spread)" "(reference)" || true
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
  if [ -f "$out/$mix.forced.npy" ]; then
    row "$out/$mix.ours.npy" "$out/$mix.peer.npy" "$mix" "$types" "$other" report || true
    row "$out/$mix.forced.npy" "$out/$mix.peer.npy" "$mix" "$types" "upstream llama.cpp, upstream's choice wherever the engines chose differently (second table)" check || status=1
  else
    row "$out/$mix.ours.npy" "$out/$mix.peer.npy" "$mix" "$types" "$other" check || status=1
  fi
done
cat "$out/table1"
echo
echo "Choices taken from upstream (margins relative to max |upstream score|; NMSE of the score rows):"
echo
cat "$out/table2"
exit $status
