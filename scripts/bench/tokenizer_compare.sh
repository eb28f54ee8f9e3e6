#!/usr/bin/env bash
# Tokenizer throughput: dsv4-tokenize vs upstream llama.cpp llama-tokenize, same vocabulary, same text.
#
#   scripts/bench/tokenizer_compare.sh [REPEAT]      (REPEAT: copies of the corpus text, default 24 ≈ 4.2 MB)
#
# Env overrides: OURS (dsv4-tokenize), THEIRS (llama-tokenize), MKMODEL (dsv4-mkmodel), GGUF, WORK.
# Vocabulary: a GGUF written by dsv4-mkmodel from the real DeepSeek-V4 tokenizer.json (tiny weights);
# llama-tokenize loads it vocab-only (it always does). Text: the "text" fields of
# tests/fixtures/tokenizer/corpus.jsonl.gz joined with "\n", repeated REPEAT times.
# Mode: "rendered" semantics on both sides (added tokens matched), i.e. dsv4-tokenize --rendered vs
# llama-tokenize default (parse special); llama-tokenize gets --no-escape (otherwise it rewrites the
# two characters \n in the text into a newline) and --no-bos. Both print ids; timed runs go to /dev/null.
# Timing: A B A B ... (5 repetitions each, after one warm-up each), wall clock of the whole process.
# Load time is measured the same way on a 1-byte input and its median subtracted from every run.
# Ids: one more run of each to files, compared exactly (first difference and a count of differing
# hunks are printed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REPEAT="${1:-24}"
REPS=5
OURS="${OURS:-$ROOT/build/lead/tools/dsv4-tokenize}"
THEIRS="${THEIRS:-$ROOT/build/peer/build/bin/llama-tokenize}"
MKMODEL="${MKMODEL:-$ROOT/build/lead/tools/dsv4-mkmodel}"
WORK="${WORK:-/tmp/dsv4-tokbench}"
GGUF="${GGUF:-$WORK/tokbench.gguf}"
mkdir -p "$WORK"
for b in "$OURS" "$THEIRS"; do [ -x "$b" ] || { echo "missing $b" >&2; exit 1; }; done
if [ ! -s "$GGUF" ]; then
  "$MKMODEL" -o "$GGUF" --tokenizer "$ROOT/third_party/tokenizer/deepseek-v4/tokenizer.json" --preset tiny --mix f32 >&2
fi
TEXT="$WORK/text.txt"
python3 - "$ROOT/tests/fixtures/tokenizer/corpus.jsonl.gz" "$TEXT" "$REPEAT" <<'PY'
import gzip, json, sys
t = [json.loads(l)["text"] for l in gzip.open(sys.argv[1], "rt", encoding="utf-8")]
s = ("\n".join(t) + "\n").encode("utf-8")
open(sys.argv[2], "wb").write(s * int(sys.argv[3]))
PY
printf 'a' > "$WORK/one.txt"
BYTES=$(stat -c %s "$TEXT")

run_ours()   { "$OURS" -m "$GGUF" --rendered --ids-only < "$1"; }
run_theirs() { "$THEIRS" -m "$GGUF" -f "$1" --ids --no-bos --no-escape --log-disable 2>/dev/null; }
now() { date +%s.%N; }
timeit() {  # fn file -> seconds
  local t0 t1; t0=$(now); "$1" "$2" > /dev/null; t1=$(now)
  python3 -c "print(f'{$t1-$t0:.6f}')"
}

echo "text: $TEXT ($BYTES bytes, corpus x$REPEAT); vocab: $GGUF" >&2
run_ours "$WORK/one.txt" >/dev/null; run_theirs "$WORK/one.txt" >/dev/null
LO=(); LT=(); O=(); T=()
for i in $(seq $REPS); do
  LO+=("$(timeit run_ours "$WORK/one.txt")"); LT+=("$(timeit run_theirs "$WORK/one.txt")")
done
run_ours "$TEXT" >/dev/null; run_theirs "$TEXT" >/dev/null   # warm-up (page cache)
for i in $(seq $REPS); do
  O+=("$(timeit run_ours "$TEXT")"); T+=("$(timeit run_theirs "$TEXT")")
  echo "rep $i: ours ${O[-1]} s, llama-tokenize ${T[-1]} s" >&2
done

run_ours "$TEXT" > "$WORK/ids_ours.txt"
run_theirs "$TEXT" > "$WORK/ids_theirs.txt"

python3 - "$BYTES" "${LO[*]}" "${LT[*]}" "${O[*]}" "${T[*]}" "$WORK/ids_ours.txt" "$WORK/ids_theirs.txt" \
          "$ROOT/third_party/tokenizer/deepseek-v4/tokenizer.json" "$TEXT" <<'PY'
import sys, statistics as st, difflib, json
nb = int(sys.argv[1]); f = lambda s: [float(x) for x in s.split()]
lo, lt, o, t = map(f, sys.argv[2:6])
mlo, mlt = st.median(lo), st.median(lt)
mo = [nb / (x - mlo) / 1e6 for x in o]; mt = [nb / (x - mlt) / 1e6 for x in t]
ratio = [a / b for a, b in zip(mo, mt)]
fmt = lambda v: f"{st.median(v):.2f} (min {min(v):.2f}, max {max(v):.2f})"
print(f"| tool | load s (median of {len(lo)}, 1-byte input) | total s (median) | tokenize MB/s: median (min, max) |")
print("|---|---|---|---|")
print(f"| dsv4-tokenize --rendered | {mlo:.3f} | {st.median(o):.3f} | {fmt(mo)} |")
print(f"| llama-tokenize (vocab-only) | {mlt:.3f} | {st.median(t):.3f} | {fmt(mt)} |")
print(f"\nratio ours/theirs (MB/s, per A-B pair): {fmt(ratio)}; text {nb} bytes")
ours = [int(x) for x in open(sys.argv[6]).read().split()]
th = open(sys.argv[7]).read().strip().strip("[]")
th = [int(x) for x in th.split(",") if x.strip()]
print(f"ids: ours {len(ours)} tokens, llama-tokenize {len(th)} tokens, identical: {ours == th}")
if ours != th:
    tj = json.load(open(sys.argv[8]))
    inv = {v: k for k, v in tj["model"]["vocab"].items()}
    for a in tj["added_tokens"]: inv[a["id"]] = a["content"]
    i = next((k for k, (x, y) in enumerate(zip(th, ours)) if x != y), min(len(th), len(ours)))
    N = 100000  # difflib is quadratic-ish: hunks counted in the window from the first difference
    sm = difflib.SequenceMatcher(None, th[i:i + N], ours[i:i + N], autojunk=False)
    hunks = [(t, a + i, b + i, c + i, d + i) for t, a, b, c, d in sm.get_opcodes() if t != "equal"]
    print(f"first difference at token {i}; differing hunks in the {N} tokens from there: {len(hunks)}; "
          "first ones (llama-tokenize -> ours):")
    for h in hunks[:5]:
        print("  at token", h[1], [inv.get(i, i) for i in th[h[1]:h[2]]], "->", [inv.get(i, i) for i in ours[h[3]:h[4]]])
PY
