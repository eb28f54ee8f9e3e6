#!/usr/bin/env bash
# Create (or refresh) the reference-oracle venv at scripts/reference/.venv. Idempotent:
# re-running installs nothing when every pin in requirements.txt is already satisfied.
# Never needed by CI. Needs PyPI (torch comes as the CUDA-capable wheel, several GB).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
extra=()
# use a local wheel cache when the machine has one
if [ -d /opt/wheels ]; then extra+=(--find-links /opt/wheels); fi
if "$venv/bin/python" - "$here/requirements.txt" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, _, want = line.partition("==")
    try:
        if version(name) != want:
            ok = False
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
then
    echo "reference venv up to date: $venv"
else
    "$venv/bin/python" -m pip install --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install "${extra[@]}" -r "$here/requirements.txt"
    echo "reference venv ready: $venv"
fi
