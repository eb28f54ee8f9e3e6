#!/usr/bin/env python3
"""Tensor table, metadata and per-tensor digests of a GGUF, using gguf-py's reader and its
reference dequantizer (`gguf.quants.dequantize`).

Run with the converter venv (build/peer/conv-venv), whose `gguf` is the vendored llama.cpp gguf-py:

  build/peer/conv-venv/bin/python scripts/peer/gguf_digest.py FILE.gguf OUT_PREFIX

Writes OUT_PREFIX.tensors.json, OUT_PREFIX.tensors.txt and OUT_PREFIX.metadata.json.

Per tensor:
  name, type (ggml type name), ne (ggml order: ne0 = contiguous dim), nbytes,
  sha256_raw:  sha256 of the stored bytes as they are in the file,
  sha256_f32:  sha256 of the dequantized values as little-endian float32, C order over the numpy
               shape (reversed ne), i.e. element (i_{n-1}, ..., i_0) with i_0 fastest = ne0 fastest.
               For integer tensors (I8/I16/I32/I64) the values are converted to float32 exactly
               (all values here are small integers) and flagged "int".
  stats: min, max, mean, absmean of the float32 values (float64 accumulation).
All dequantizations here are exact in float32 (BF16/F16 widen exactly; Q8_0 is f16 scale x int8;
MXFP4 is an E8M0 power of two x an e2m1 value), so the digests are implementation-independent.
"""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import gguf
from gguf.quants import dequantize

INT_TYPES = {
    gguf.GGMLQuantizationType.I8, gguf.GGMLQuantizationType.I16,
    gguf.GGMLQuantizationType.I32, gguf.GGMLQuantizationType.I64,
}


def field_value(f):
    try:
        return f.contents()
    except Exception:  # noqa: BLE001
        return None


def main() -> None:
    path, prefix = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(path)

    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        v = field_value(f)
        if isinstance(v, list) and len(v) > 64:
            blob = json.dumps(v, ensure_ascii=False).encode()
            meta[k] = {"array_len": len(v), "sha256_json": hashlib.sha256(blob).hexdigest(),
                       "first": v[:8]}
        elif isinstance(v, str) and len(v) > 512:
            meta[k] = {"str_len": len(v), "sha256_utf8": hashlib.sha256(v.encode()).hexdigest(),
                       "head": v[:120]}
        else:
            meta[k] = v
    with open(prefix + ".metadata.json", "w") as fh:
        json.dump(meta, fh, indent=1, ensure_ascii=False, default=str)
        fh.write("\n")

    rows = []
    for t in r.tensors:
        qt = t.tensor_type
        raw = np.ascontiguousarray(t.data)
        ne = [int(x) for x in t.shape]
        np_shape = tuple(reversed(ne))
        if qt in INT_TYPES:
            vals = raw.reshape(np_shape).astype(np.float32)
            kind = "int"
        else:
            vals = dequantize(raw, qt).astype(np.float32).reshape(np_shape)
            kind = "float"
        v64 = vals.astype(np.float64)
        rows.append({
            "name": t.name,
            "type": qt.name,
            "ne": ne,
            "nbytes": int(t.n_bytes),
            "kind": kind,
            "sha256_raw": hashlib.sha256(raw.tobytes()).hexdigest(),
            "sha256_f32": hashlib.sha256(np.ascontiguousarray(vals).astype("<f4").tobytes()).hexdigest(),
            "min": float(v64.min()), "max": float(v64.max()),
            "mean": float(v64.mean()), "absmean": float(np.abs(v64).mean()),
        })

    with open(prefix + ".tensors.json", "w") as fh:
        json.dump({"file": path.split("/")[-1], "n_tensors": len(rows), "tensors": rows}, fh, indent=1)
        fh.write("\n")
    with open(prefix + ".tensors.txt", "w") as fh:
        fh.write(f"# {len(rows)} tensors; name  type  ne(ggml order)  sha256 of dequantized f32 (first 16 hex)\n")
        w = max(len(x["name"]) for x in rows)
        for x in rows:
            fh.write(f"{x['name']:<{w}}  {x['type']:<6}  {str(x['ne']):<22}  {x['sha256_f32'][:16]}\n")
    print(f"{path}: {len(rows)} tensors, {len(meta)} metadata keys -> {prefix}.*")


if __name__ == "__main__":
    main()
