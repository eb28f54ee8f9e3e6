#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on the bundled model.
# Until dsv4-server exists (server issue) the main job is the model summary of the bundled
# reference fixture GGUF (tests/fixtures/tiny/model.gguf: a tiny random-weight DeepSeek-V4).
# Pass another GGUF path to summarise it instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target dsv4-gguf-info
exec build/release/tools/dsv4-gguf-info "${1:-tests/fixtures/tiny/model.gguf}"
