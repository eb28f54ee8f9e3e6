#!/usr/bin/env bash
# Extract the official DeepSeek-V4 inference code from two public GitHub mirrors into a folder
# OUTSIDE git (build/ is gitignored). Nothing from these mirrors is ever copied into the repo:
# run_official.py imports the files from the extracted folder at run time.
#
# Usage: scripts/reference/official/fetch.sh [DEST]   (default: <repo>/build/official-src)
#
# Sources (see docs dsv4-architecture.md §0):
#   initial/  github:Mockingjay1316/deepseek-v4-flash-spark @ 0825add42734731a285e30f657b0ccfc5bad74c9
#             ("Replace simlinks with actual files": verbatim copy of the *initial* official
#             HF revision efc85512 of deepseek-ai/DeepSeek-V4-Flash/inference)
#   current/  github:Nicooo-Wang/DeepSeek-V4-Pro-code @ 0ec3a03c2fc34f29b2e72696ceaed9ae7a373aeb
#             model.py = current official revision (shared-expert clamp) + local edits
#             (Hadamard fallback import, demo __main__); kernel_tilelang.py = current official
#             tilelang kernels (act_quant really rounds to e4m3); kernel.py = third-party
#             pure-PyTorch re-implementation of the six kernels (runs on CPU).
#
# The mirrors are obtained as bare git directories. Where they are found is taken from
# $OFFICIAL_MIRROR_INITIAL / $OFFICIAL_MIRROR_CURRENT, else /work/.mirror/<owner>+<name>/repo,
# else they are cloned from GitHub into DEST/.git-mirrors (needs network).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dest="${1:-$repo/build/official-src}"

INIT_REPO=Mockingjay1316/deepseek-v4-flash-spark
INIT_COMMIT=0825add42734731a285e30f657b0ccfc5bad74c9
CUR_REPO=Nicooo-Wang/DeepSeek-V4-Pro-code
CUR_COMMIT=0ec3a03c2fc34f29b2e72696ceaed9ae7a373aeb

gitdir_for() {  # $1 = owner/name, $2 = env override
  local r="$1" override="$2"
  if [[ -n "$override" ]]; then echo "$override"; return; fi
  local m="/work/.mirror/${r/\//+}/repo"
  if [[ -d "$m" ]]; then echo "$m"; return; fi
  local c="$dest/.git-mirrors/${r/\//+}.git"
  if [[ ! -d "$c" ]]; then
    mkdir -p "$(dirname "$c")"
    git clone --bare --quiet "https://github.com/$r" "$c"
  fi
  echo "$c"
}

extract() {  # $1 gitdir, $2 commit, $3 subdir, files...
  local gd="$1" commit="$2" sub="$3"; shift 3
  mkdir -p "$dest/$sub"
  git --git-dir="$gd" cat-file -e "$commit^{commit}"
  for f in "$@"; do
    git --git-dir="$gd" show "$commit:$f" > "$dest/$sub/$(basename "$f")"
  done
}

gi="$(gitdir_for "$INIT_REPO" "${OFFICIAL_MIRROR_INITIAL:-}")"
gc="$(gitdir_for "$CUR_REPO" "${OFFICIAL_MIRROR_CURRENT:-}")"
rm -rf "$dest/initial" "$dest/current"
extract "$gi" "$INIT_COMMIT" initial \
  inference/model.py inference/kernel.py inference/convert.py inference/generate.py \
  inference/config.json config.json
# root config.json clashes with inference/config.json by basename: keep it under another name
git --git-dir="$gi" show "$INIT_COMMIT:config.json" > "$dest/initial/root_config.json"
git --git-dir="$gi" show "$INIT_COMMIT:inference/config.json" > "$dest/initial/config.json"
extract "$gc" "$CUR_COMMIT" current \
  inference/model.py inference/kernel.py inference/kernel_tilelang.py inference/convert.py \
  inference/generate.py inference/config.json
git --git-dir="$gc" show "$CUR_COMMIT:config.json" > "$dest/current/root_config.json"

{
  echo "# extracted by scripts/reference/official/fetch.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "initial  github:$INIT_REPO@$INIT_COMMIT"
  echo "current  github:$CUR_REPO@$CUR_COMMIT"
  (cd "$dest" && sha256sum initial/* current/*)
} > "$dest/SOURCES.txt"
# verify against the pinned hashes recorded in the repo (if any)
if [[ -f "$here/SOURCES.sha256" ]]; then
  (cd "$dest" && sha256sum --quiet -c "$here/SOURCES.sha256")
  echo "sha256 OK (pinned in scripts/reference/official/SOURCES.sha256)"
fi
cat "$dest/SOURCES.txt"
