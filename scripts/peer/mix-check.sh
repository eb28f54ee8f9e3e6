#!/usr/bin/env bash
# Loads a dsv4-mkmodel file of each quant mix in upstream llama.cpp (scripts/peer/build.sh first)
# and checks the logits are finite: the synthetic files of each GGUF flavour's type mix must load
# in upstream where upstream supports the flavour (nsparks' F8_E4M3_B128 is fork-only: expected to
# be refused). Usage: scripts/peer/mix-check.sh [BIN_DIR]   (default build/release/tools)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/release/tools}
PY=scripts/reference/.venv/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20" > "$out/toks.txt"
for mix in upstream ds4-q2 unsloth-ud nsparks; do
  "$BIN/dsv4-mkmodel" -o "$out/$mix.gguf" --tokenizer tests/fixtures/tokenizer.json --preset tiny \
    --n-embd 256 --n-ff-exp 256 --mix "$mix" >/dev/null
  if build/peer/bin/dump_logits -m "$out/$mix.gguf" -t "$out/toks.txt" -o "$out/$mix.npy" --mode batch \
       --threads 2 >"$out/$mix.log" 2>&1; then
    $PY -c "import numpy as np, sys; a = np.load('$out/$mix.npy'); \
print('$mix: upstream loads it, logits', a.shape, 'finite' if np.isfinite(a).all() else 'NOT FINITE')"
  else
    echo "$mix: upstream refuses it: $(grep -m1 -i 'error\|failed' "$out/$mix.log")"
  fi
done
