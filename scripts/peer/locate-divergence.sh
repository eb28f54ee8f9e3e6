#!/usr/bin/env bash
# Where do dsv4 (default --act-quant q8) and upstream llama.cpp part on a flavour file?
# Builds the small synthetic file of MIX as flavour-logits.sh does, runs dsv4-cli
# --dump-intermediates and upstream (dump_logits --dump-tensors, batch mode) on the same ids, and
# prints locate_divergence.py's report (per layer and intermediate: first position above 1e-10;
# for the earliest one, whether an 8-bit activation rounding flipped).
#
# Usage: scripts/peer/locate-divergence.sh [BIN_DIR] [MIX]   (defaults build/release/tools, upstream)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/release/tools}
MIX=${2:-upstream}
PY=${PY:-.venv-test/bin/python}
N_TOK=${N_TOK:-48}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ids=$($PY -c "import numpy as np; r=np.random.default_rng(5); print(','.join(map(str, r.integers(3, 250, $N_TOK))))")
echo "${ids//,/ }" > "$out/toks.txt"
"$BIN/dsv4-mkmodel" -o "$out/m.gguf" --tokenizer tests/fixtures/tokenizer.json --preset tiny \
  --n-embd 256 --n-ff-exp 256 --mix "$MIX" >/dev/null
"$BIN/dsv4-cli" -m "$out/m.gguf" --ids "$ids" -n 0 --no-official-numerics -t 2 \
  --dump-intermediates "$out/ours.tsv" >/dev/null 2>&1
build/peer/bin/dump_logits -m "$out/m.gguf" -t "$out/toks.txt" -o "$out/up.npy" --mode batch \
  --threads 2 --dump-tensors attn_norm,kv_norm,attn_out,ffn_norm,ffn_out,l_last --dump-prefix "$out/up" 2>/dev/null
$PY scripts/peer/locate_divergence.py "$out/ours.tsv" "$out/up" "$N_TOK"
