#!/usr/bin/env bash
# Forward-pass issue, acceptance "Flavours": for each real GGUF flavour's type mix, a small
# synthetic file (dsv4-mkmodel) run through upstream llama.cpp (scripts/peer/build.sh first) and
# through dsv4 on the same token ids; logits NMSE per position and over the whole logits array.
# dsv4 runs with its default --act-quant q8 (upstream's CPU activation rounding: q8_0 / q8_K /
# bf16 / f16 per weight type, the routing weight after the down projection). Neither side applies
# the §9.2/§9.3 simulation.
#
# Rows per mix (docs/agreement-flavours.md explains them):
#   upstream's own spread   upstream token-by-token vs upstream batch (another summation order);
#   dsv4's own spread       dsv4's scalar kernels vs its default SIMD level, each its own choices,
#                           and with the scalar run taking the default run's router / indexer
#                           choices (dsv4-cli --force-selections): another float order alone;
#   attribution             dsv4 --act-quant f32 vs upstream on the copy widened exactly to F32
#                           (both exact), own choices and upstream's choices;
#   upstream llama.cpp      dsv4 vs upstream batch, own choices and upstream's choices.
# "Upstream's choices": the routers' experts and the indexer's rows upstream took in the same batch
# run (captured from its graph; its logits are checked unchanged by the capture) replace dsv4's
# wherever the two engines chose a different set. scripts/peer/forced_choices.py checks every such
# choice (each engine's own top-k; every id visible to dsv4; on the exact path an exact tie) and
# every layer's scores (the same candidates visible at every position; on the exact path score NMSE
# ≤ 1e-6 at every position, on the rounding path median ≤ 1e-3 router, ≤ 1e-2 indexer) — second
# and third tables.
# nsparks (F8_E4M3_B128) is fork-only: upstream refuses it, so dsv4's cpu backend is compared with
# its scalar `ref` backend there, both --act-quant f32.
#
# Exit status 1 when a gate fails: upstream's choices, rounding path: NMSE over the whole logits
# array ≤ 1e-3; upstream's choices, exact path (attribution, and the f32 mix): ≤ 1e-6 at every
# position (the issue's bound for exact F32 comparisons); nsparks:
# ≤ 1e-3 at every position; forced_choices.py's checks. The per-position maximum of the rounding
# path is printed, not gated (≤ 1e-3 is not met: docs/agreement-flavours.md says why).
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
status=0
touch "$out/table1" "$out/table2" "$out/table3"
# the tables so far are printed however the script ends
finish() {
  local rc=$?
  set +e
  cat "$out/table1"
  echo
  echo "Choices taken from the other engine where the two chose differently (margins relative to max |upstream score|):"
  echo
  cat "$out/table2"
  echo
  echo "Scores per layer, every position (upstream's choices runs):"
  echo
  cat "$out/table3"
  [ $rc -eq 0 ] || echo "flavour-logits.sh: stopped with status $rc" >&2
  rm -rf "$out"
  exit $rc
}
trap finish EXIT
ids=$($PY -c "import numpy as np; r=np.random.default_rng(5); print(','.join(map(str, r.integers(3, 250, $N_TOK))))")
echo "${ids//,/ }" > "$out/toks.txt"
echo "| mix | types | compared with | NMSE max | NMSE median | NMSE all positions | top-1 agreement | largest upstream top-2 margin where top-1 differs | max ≤ 1e-3 | all ≤ 1e-3 | gate |" > "$out/table1"
echo "|---|---|---|---|---|---|---|---|---|---|---|" >> "$out/table1"
echo "| mix | choice | layer | position | ours | upstream's | upstream's margin | our margin | score NMSE there | own top-k both |" > "$out/table2"
echo "|---|---|---|---|---|---|---|---|---|---|" >> "$out/table2"
echo "| mix | choice | layer | positions | replaced | exact ties | visibility mismatches | score NMSE median | score NMSE max | ok |" > "$out/table3"
echo "|---|---|---|---|---|---|---|---|---|---|" >> "$out/table3"

# row A.npy B.npy WITH GATE: one table1 row for $mix, A against B (B the reference side). GATE:
# "-" none, "all" NMSE over the whole array ≤ 1e-3, "max=X" every position ≤ X. Exit 1 on a
# failed gate (other statuses: the comparison itself failed).
row() {
  $PY - "$1" "$2" "$mix" "$types" "$3" "$4" >> "$out/table1" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
mix, types, with_, gate = sys.argv[3:7]
n = ((a - b) ** 2).sum(1) / (b ** 2).sum(1)
whole = ((a - b) ** 2).sum() / (b ** 2).sum()
top = np.sort(b, axis=1)
margin = top[:, -1] - top[:, -2]
diff = a.argmax(1) != b.argmax(1)
m = f"{margin[diff].max():.2e}" if diff.any() else "–"
yn = lambda ok: "yes" if ok else "NO"
ok = True
if gate == "all":
    ok = whole <= 1e-3
    g = f"all ≤ 1e-3: {yn(ok)}"
elif gate.startswith("max="):
    ok = n.max() <= float(gate[4:])
    g = f"max ≤ {gate[4:]}: {yn(ok)}"
else:
    g = "–"
print(f"| {mix} | {types} | {with_} | {n.max():.3e} | {np.median(n):.3e} | {whole:.3e} | {(~diff).mean():.4f} | {m} | {yn(n.max() <= 1e-3)} | {yn(whole <= 1e-3)} | {g} |")
sys.exit(0 if ok else 1)
PYEOF
}
# cli NAME ARGS…: dsv4-cli on $f, logits of every position to $out/$mix.NAME.npy
cli() {
  local name=$1
  shift
  "$BIN/dsv4-cli" -m "$f" --ids "$ids" -n 0 --all-logits --dump-logits "$out/$mix.$name.npy" \
    --no-official-numerics -t 2 "$@" >"$out/$mix.$name.log" 2>&1 || { echo "$mix: dsv4-cli $name failed (see its log)" >&2; cat "$out/$mix.$name.log" >&2; exit 1; }
}
# peer FILE NAME ARGS…: upstream's dump_logits, logits to $out/$mix.NAME.npy
peer() {
  local file=$1 name=$2
  shift 2
  build/peer/bin/dump_logits -m "$file" -t "$out/toks.txt" -o "$out/$mix.$name.npy" --threads 2 "$@" \
    >"$out/$mix.$name.log" 2>&1
}
# upstream_choices FILE NAME PREFIX: the batch run again with the routers' scores and argsort and
# the indexer's scores and top-k captured (PREFIX.*); its logits must equal $out/$mix.NAME.npy's;
# writes PREFIX.L<il>.experts.npy (the first n_expert_used of the argsort) beside the .topk.npy
upstream_choices() {
  peer "$1" "$2-cap" --mode batch --dump-topk "$3" --dump-tensors ffn_moe_argsort,ffn_moe_probs_biased \
    --dump-prefix "$3" || { echo "$mix: the capture run of $2 failed" >&2; exit 1; }
  cmp -s "$out/$mix.$2.npy" "$out/$mix.$2-cap.npy" || { echo "$mix: upstream's logits change under capture ($2)" >&2; exit 1; }
  $PY - "$3" "$n_used" <<'PYEOF'
import glob, re, sys, numpy as np
for f in glob.glob(sys.argv[1] + ".ffn_moe_argsort-*.0.npy"):
    il = int(re.search(r"argsort-(\d+)\.0\.npy$", f).group(1))
    a = np.load(f)
    np.save(f"{sys.argv[1]}.L{il}.experts.npy", a.reshape(-1, a.shape[-1])[:, : int(sys.argv[2])].astype(np.int32))
PYEOF
}
# our_choices TSV PREFIX: dsv4's own choices (--dump-intermediates router_experts of score-routed
# layers, indexer_topk) as PREFIX.L<il>.{experts,topk}.npy (rows padded with -1)
our_choices() {
  $PY - "$1" "$2" <<'PYEOF'
import sys, numpy as np
rows, routed = {}, set()
for line in open(sys.argv[1]):
    name, layer, pos, vals = line.rstrip("\n").split("\t")
    if name == "router_biased_scores":
        routed.add(int(layer))
    if name in ("router_experts", "indexer_topk"):
        rows.setdefault((name, int(layer)), {})[int(pos)] = [int(float(v)) for v in vals.split()]
for (name, layer), r in rows.items():
    if name == "router_experts" and layer not in routed:
        continue
    w = max(1, max(len(v) for v in r.values()))
    a = np.full((max(r) + 1, w), -1, np.int32)
    for p, v in r.items():
        a[p, : len(v)] = v
    np.save(f"{sys.argv[2]}.L{layer}.{'experts' if name == 'router_experts' else 'topk'}.npy", a)
PYEOF
}

for mix in $MIXES; do
  f="$out/$mix.gguf"
  "$BIN/dsv4-mkmodel" -o "$f" --tokenizer tests/fixtures/tokenizer.json --preset tiny \
    --n-embd "$N_EMBD" --n-ff-exp "$N_EMBD" --mix "$mix" >/dev/null
  cli ours --dump-intermediates "$out/$mix.ours.tsv"
  types=$(grep '^types:' "$out/$mix.ours.log" | cut -d' ' -f2- | tr -d '|')
  n_used=$(grep -o '([0-9]* used)' "$out/$mix.ours.log" | tr -dc 0-9)
  if [ "$mix" = nsparks ]; then
    # upstream refuses F8_E4M3_B128 (checked): dsv4's cpu backend vs its float64 ref backend
    if peer "$f" peer --mode batch; then echo "nsparks: upstream loaded the file; compare with it instead" >&2; exit 1; fi
    cli cpu-f32 --act-quant f32
    cli ref --act-quant f32 --backend ref
    row "$out/$mix.cpu-f32.npy" "$out/$mix.ref.npy" "dsv4 cpu vs dsv4 ref backend, --act-quant f32 (upstream refuses the file)" "max=1e-3" || status=1
    continue
  fi
  peer "$f" peer --mode batch || { echo "$mix: upstream failed on the file (see below)" >&2; cat "$out/$mix.peer.log" >&2; exit 1; }
  peer "$f" peertok --mode token
  row "$out/$mix.peertok.npy" "$out/$mix.peer.npy" "upstream token-by-token vs upstream batch (upstream's own spread)" -
  # dsv4 against itself: the portable scalar kernels (another float order, the same rounding rules)
  level=$(grep -o 'cpu\[[a-z0-9]*\]' "$out/$mix.ours.log" | head -1)
  DSV4_SIMD=scalar cli scalar
  row "$out/$mix.scalar.npy" "$out/$mix.ours.npy" "dsv4 cpu[scalar] vs dsv4 $level, each its own choices (dsv4's own spread)" -
  our_choices "$out/$mix.ours.tsv" "$out/$mix.self"
  DSV4_SIMD=scalar cli scalar-forced --force-selections "$out/$mix.self"
  row "$out/$mix.scalar-forced.npy" "$out/$mix.ours.npy" "dsv4 cpu[scalar] vs dsv4 $level, the $level run's choices ($(grep -c '^force-selections' "$out/$mix.scalar-forced.log") replaced)" -
  if [ "$mix" != f32 ]; then
    # the same file with every tensor widened exactly to F32: upstream then runs float matmuls
    # without its activation rounding; dsv4 with --act-quant f32 is the exact path too
    scripts/reference/.venv/bin/python scripts/peer/gguf_to_f32.py "$f" "$out/$mix.f32w.gguf" >/dev/null
    peer "$out/$mix.f32w.gguf" f32w --mode batch
    cli ours-f32 --act-quant f32
    row "$out/$mix.ours-f32.npy" "$out/$mix.f32w.npy" "attribution: dsv4 --act-quant f32 vs upstream on the F32-widened copy, each its own choices" -
    upstream_choices "$out/$mix.f32w.gguf" f32w "$out/$mix.f32w-up"
    cli ours-f32-forced --act-quant f32 --force-selections "$out/$mix.f32w-up" --dump-intermediates "$out/$mix.ours-f32-forced.tsv"
    $PY scripts/peer/forced_choices.py --exact "$mix (exact)" "$out/$mix.ours-f32-forced.log" "$out/$mix.ours-f32-forced.tsv" \
      "$out/$mix.f32w-up" "$out/table2" "$out/table3" || status=1
    row "$out/$mix.ours-f32-forced.npy" "$out/$mix.f32w.npy" "attribution, upstream's choices where they differ ($(grep -c '^force-selections' "$out/$mix.ours-f32-forced.log") replaced)" "max=1e-6" || status=1
  fi
  row "$out/$mix.ours.npy" "$out/$mix.peer.npy" "upstream llama.cpp, each engine's own choices" -
  upstream_choices "$f" peer "$out/$mix.up"
  cli forced --force-selections "$out/$mix.up" --dump-intermediates "$out/$mix.forced.tsv"
  # the f32 mix rounds nothing: the exact path's gates
  gate=all exact=
  [ "$mix" != f32 ] || { gate=max=1e-6; exact=--exact; }
  $PY scripts/peer/forced_choices.py $exact "$mix" "$out/$mix.forced.log" "$out/$mix.forced.tsv" "$out/$mix.up" \
    "$out/table2" "$out/table3" || status=1
  row "$out/$mix.forced.npy" "$out/$mix.peer.npy" "upstream llama.cpp, upstream's choices where they differ ($(grep -c '^force-selections' "$out/$mix.forced.log") replaced)" "$gate" || status=1
done
exit $status
