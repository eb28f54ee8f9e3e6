#!/usr/bin/env python3
"""Compares dsv4-convert with upstream's convert_hf_to_gguf.py on the real-vocabulary tiny-quant
checkpoint (build/peer/tiny-quant-realvocab, made by scripts/peer/convert-check.sh): every tensor,
vocabulary-sized ones included, must have upstream's type, shape, stored bytes and dequantized
values (digests in tests/fixtures/upstream-converter/tiny-quant-realvocab.tensors.json).

Run: .venv-test/bin/python scripts/peer/convert_compare.py [--bin build/release/tools]
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

import gguf
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build/release/tools"))
    ap.add_argument("--checkpoint", default=str(ROOT / "build/peer/tiny-quant-realvocab"))
    a = ap.parse_args()
    upstream = json.loads((ROOT / "tests/fixtures/upstream-converter/tiny-quant-realvocab.tensors.json").read_text())
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "ours.gguf"
        subprocess.run([a.bin + "/dsv4-convert", a.checkpoint, "-o", str(out)], check=True)
        r = gguf.GGUFReader(out)
        ours = {t.name: t for t in r.tensors}
        bad = 0
        for u in upstream["tensors"]:
            t = ours.get(u["name"])
            if t is None:
                print("missing", u["name"]); bad += 1; continue
            raw = hashlib.sha256(bytes(t.data.tobytes())).hexdigest()
            if t.tensor_type == gguf.GGMLQuantizationType.I32:  # hashed as values in float32
                v = np.asarray(t.data).astype("<f4")
            else:
                v = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
            f32 = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
            same = (t.tensor_type.name == u["type"] and [int(x) for x in t.shape] == u["ne"]
                    and raw == u["sha256_raw"] and f32 == u["sha256_f32"])
            if not same:
                print("differs", u["name"], t.tensor_type.name, u["type"]); bad += 1
        extra = set(ours) - {u["name"] for u in upstream["tensors"]}
        print(f"{len(upstream['tensors'])} upstream tensors, {bad} differ, {len(extra)} extra in ours")
        return 1 if bad or extra else 0


if __name__ == "__main__":
    sys.exit(main())
