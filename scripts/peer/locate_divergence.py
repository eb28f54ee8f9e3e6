#!/usr/bin/env python3
"""Where do dsv4 and upstream llama.cpp part on one file? (forward-pass issue, "Flavours").

Reads dsv4-cli --dump-intermediates TSV and dump_logits --dump-tensors .npy captures (batch mode,
one decode call) and prints, per layer in computation order, each compared intermediate's
per-position NMSE (ours vs upstream) and the first position above --eps. For the first
divergence of a projection output (kv), it then tells whether the 8-bit activation rounding of
the projection's input flipped: the q8_0 blocks (upstream's x86 quantizer: id = 127/amax, ties to
even) of our input and of upstream's input are compared element by element.

  locate_divergence.py OURS.tsv UP_PREFIX N_TOKENS [--layers L] [--eps 1e-10]
"""
import argparse
import collections

import numpy as np

# (ours, upstream) names of the same tensor (dsv4-architecture.md names / upstream graph names)
PAIRS = [("attn_norm", "attn_norm"), ("kv_unrounded", "kv_norm"), ("attn_out", "attn_out"),
         ("ffn_norm", "ffn_norm"), ("moe_out", "ffn_out"), ("l_out", "l_last")]
# the input a projection rounds to 8 bits (q8_0 for q8_0 / mxfp4 weights)
INPUT_OF = {"kv_unrounded": "attn_norm", "moe_out": "ffn_norm"}


def q8_0(x):
    """q8_0 blocks of x: (values, x·id, fp16 scale d)."""
    x = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(x).max(1, keepdims=True)
    inv = np.where(amax != 0, np.float32(127) / np.where(amax != 0, amax, 1), 0).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float16)
    return np.rint((x * inv).astype(np.float32)).astype(np.int32), (x * inv).astype(np.float32), d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("up_prefix")
    ap.add_argument("n", type=int)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--eps", type=float, default=1e-10)
    a = ap.parse_args()
    ours = collections.defaultdict(dict)
    for line in open(a.ours):
        name, layer, pos, vals = line.rstrip("\n").split("\t")
        ours[(name, int(layer))][int(pos)] = np.array(vals.split(), dtype=np.float64)
    first = None
    starts = []  # (layer, ours name, first position) of each projection output that diverges
    for layer in range(a.layers):
        found = False
        for on, un in PAIRS:
            try:
                u = np.load(f"{a.up_prefix}.{un}-{layer}.0.npy").astype(np.float64).reshape(a.n, -1)
            except FileNotFoundError:
                continue
            if (on, layer) not in ours:
                continue
            found = True
            o = np.stack([ours[(on, layer)][p] for p in range(a.n)])
            e = ((o - u) ** 2).sum(1) / np.maximum((u ** 2).sum(1), 1e-300)
            bad = np.flatnonzero(e > a.eps)
            p0 = int(bad[0]) if len(bad) else -1
            print(f"L{layer} {on:>13} ~ {un:<10} max {e.max():.1e} median {np.median(e):.1e} "
                  f"first > {a.eps:.0e} at {p0}")
            if p0 >= 0 and (first is None or (p0, layer) < (first[0], first[1])):
                first = (p0, layer, on)
            if p0 >= 0 and on in INPUT_OF:
                starts.append((layer, on, p0))
        if not found:
            break
    if first is None:
        print("no divergence above eps")
        return
    print(f"earliest: position {first[0]}, layer {first[1]}, {first[2]}")
    for layer, on, p0 in starts:
        src = INPUT_OF[on]
        u = np.load(f"{a.up_prefix}.{src}-{layer}.0.npy").astype(np.float32).reshape(a.n, -1)[p0]
        o = ours[(src, layer)][p0].astype(np.float32)
        qo, vo, do = q8_0(o)
        qu, vu, du = q8_0(u)
        rel = np.max(np.abs(o - u)) / np.max(np.abs(u))
        diff = np.argwhere(qo != qu)
        dd = np.flatnonzero(do != du)
        msg = (f"L{layer} {on} first diverges at {p0}; its input {src} there: ours and upstream's "
               f"differ by {rel:.1e} (max, relative); ")
        if len(dd):
            b = dd[0]
            msg += (f"{len(dd)} block scale(s) round to another fp16, e.g. block {b}: "
                    f"d = {float(do[b, 0])!r} (ours) vs {float(du[b, 0])!r} (upstream); ")
        if len(diff):
            b, j = diff[0]
            msg += (f"{len(diff)} q8_0 element(s) round differently, e.g. block {b} element {j}: "
                    f"x·id = {vo[b, j]:.7f} (ours) vs {vu[b, j]:.7f} (upstream) -> {qo[b, j]} vs {qu[b, j]}")
        elif not len(dd):
            msg += "its q8_0 rounding agrees (the flip is further in: the MoE's h, or a selection)"
        print(msg)


if __name__ == "__main__":
    main()
