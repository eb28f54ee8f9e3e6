#!/usr/bin/env python3
"""Compare two tensor tables written by gguf_digest.py: the upstream converter's GGUF (real vocab)
against the reference helper's tiny-vocab fixture GGUF of the same config.

  python compare_tables.py CONVERTER.tensors.json FIXTURE.tensors.json [VOCAB_TOY VOCAB_REAL]

Reports: names only in one file, shape differences (vocab-sized dims excepted), type differences,
and which tensors have bit-identical dequantized values.
"""
from __future__ import annotations

import json
import sys


def main() -> None:
    a = {t["name"]: t for t in json.load(open(sys.argv[1]))["tensors"]}
    b = {t["name"]: t for t in json.load(open(sys.argv[2]))["tensors"]}
    out = []
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    out.append(f"tensors: converter {len(a)}, fixture {len(b)}, common {len(set(a) & set(b))}")
    out.append(f"only in converter output: {only_a or 'none'}")
    out.append(f"only in fixture GGUF:     {only_b or 'none'}")
    vocab_dims = {512, 129280}
    shape_d, type_d, same, diff = [], [], [], []
    for n in sorted(set(a) & set(b)):
        x, y = a[n], b[n]
        nx = [d for d in x["ne"] if d not in vocab_dims]
        ny = [d for d in y["ne"] if d not in vocab_dims]
        if nx != ny:
            shape_d.append(f"{n}: converter {x['ne']} fixture {y['ne']}")
        if x["type"] != y["type"]:
            type_d.append(f"{n}: converter {x['type']} fixture {y['type']}")
        (same if x["sha256_f32"] == y["sha256_f32"] else diff).append(n)
    out.append(f"shape differences (ignoring vocab-sized dims): {len(shape_d)}")
    out += ["  " + s for s in shape_d]
    out.append(f"type differences: {len(type_d)}")
    out += ["  " + s for s in type_d]
    out.append(f"bit-identical dequantized values: {len(same)}; different: {len(diff)}")
    out.append("  different: " + ", ".join(diff))
    print("\n".join(out))


if __name__ == "__main__":
    main()
