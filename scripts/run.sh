#!/usr/bin/env bash
# README command 1: set up, build, create the bundled default model and start dsv4-server on it.
#
# The default model is a small SYNTHETIC DeepSeek-V4 (dsv4-mkmodel --preset small --mix upstream:
# 4 layers, n_embd 512, MXFP4 experts, Q8_0 dense) with the real DeepSeek-V4 tokenizer and chat
# format. Its weights are random: the server, the API, streaming, tools and the chat format work
# end to end, the text it writes is noise. To serve a real model, pass its GGUF (first shard) or
# its official safetensors directory:
#   bash scripts/run.sh /path/to/DeepSeek-V4-Flash-00001-of-00005.gguf [more dsv4-server flags]
# Env: PORT (default 8080), HOST (default 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target dsv4-server dsv4-mkmodel dsv4-cli
MODEL=build/models/dsv4-default-small.gguf
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then
  MODEL=$1
  shift
elif [ ! -f "$MODEL" ]; then
  mkdir -p build/models
  echo "run: creating the default model $MODEL (random weights, real tokenizer)"
  build/release/tools/dsv4-mkmodel -o "$MODEL" --preset small --mix upstream --seed 1 \
    --tokenizer third_party/tokenizer/deepseek-v4/tokenizer.json
fi
PORT=${PORT:-8080}
HOST=${HOST:-127.0.0.1}
cat <<EOT

dsv4-server on http://$HOST:$PORT serving $MODEL as "deepseek-v4"
Try (in another terminal):

  curl -s http://$HOST:$PORT/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "deepseek-v4", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32}'

  .venv-test/bin/python - <<'PY'
from openai import OpenAI
client = OpenAI(base_url="http://$HOST:$PORT/v1", api_key="none")
r = client.chat.completions.create(model="deepseek-v4", max_tokens=32,
                                   messages=[{"role": "user", "content": "Hello!"}])
m = r.choices[0].message
print("reasoning:", getattr(m, "reasoning_content", None))
print("content:", m.content)
print(r.usage)
PY

EOT
exec build/release/tools/dsv4-server -m "$MODEL" --host "$HOST" --port "$PORT" --alias deepseek-v4 "$@"
