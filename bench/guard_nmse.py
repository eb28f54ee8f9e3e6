#!/usr/bin/env python3
"""Per-position NMSE between two float32 .npy logits arrays [n_pos][n_vocab] (a = ours, b = upstream).

NMSE(p) = sum_v (a[p,v] - b[p,v])^2 / sum_v b[p,v]^2. Prints one line:
  "<median> <p95> <max> <argmax> <global> <n_pos>"   (global = over all positions at once).
Uses numpy when importable (e.g. scripts/reference/.venv), else plain Python (slower).
"""
import ast
import struct
import sys


def load_raw(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        sys.exit(f"{path}: not an .npy file")
    major = data[6]
    if major == 1:
        hl, off = struct.unpack("<H", data[8:10])[0], 10
    else:
        hl, off = struct.unpack("<I", data[8:12])[0], 12
    hdr = ast.literal_eval(data[off:off + hl].decode("latin1"))
    if hdr["descr"] not in ("<f4", "|f4") or hdr.get("fortran_order"):
        sys.exit(f"{path}: need C-order float32, got {hdr}")
    return tuple(hdr["shape"]), data[off + hl:]


def main(pa, pb):
    sa, ra = load_raw(pa)
    sb, rb = load_raw(pb)
    if sa != sb or len(sa) != 2:
        print(f"nan nan nan -1 nan 0  # shape mismatch {sa} vs {sb}")
        return
    n, v = sa
    try:
        import numpy as np
        a = np.frombuffer(ra, dtype="<f4").reshape(n, v).astype(np.float64)
        b = np.frombuffer(rb, dtype="<f4").reshape(n, v).astype(np.float64)
        num = ((a - b) ** 2).sum(axis=1)
        den = (b ** 2).sum(axis=1)
        per = list(num / den)
        glob = num.sum() / den.sum()
    except ImportError:
        import array
        a = array.array("f"); a.frombytes(ra)
        b = array.array("f"); b.frombytes(rb)
        per, tn, td = [], 0.0, 0.0
        for p in range(n):
            x, y = a[p * v:(p + 1) * v], b[p * v:(p + 1) * v]
            num = sum((s - t) * (s - t) for s, t in zip(x, y))
            den = sum(t * t for t in y)
            per.append(num / den)
            tn, td = tn + num, td + den
        glob = tn / td
    s = sorted(per)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    p95 = s[min(len(s) - 1, int(0.95 * len(s)))]
    print(f"{med:.3e} {p95:.3e} {max(per):.3e} {per.index(max(per))} {glob:.3e} {n}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
