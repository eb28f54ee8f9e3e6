#!/usr/bin/env python3
"""Compare the official code's stored (FP8-rounded) KV rows and indexer keys with the fixtures'
`simon/kv_raw.L*.npy`, `simon/kv_comp.L*.npy` (dsv4ref) for a full prefill of tokens/main.

    cd scripts/reference && .venv/bin/python official/check_kv.py [--config tiny]

Official rows are captured by wrapping model.act_quant (in-place calls = the FP8 KV round-trip of
the nope channels; per layer: raw rows [T, nope] then, for compressed layers, compressed rows
[T/r, nope]) and from the compressor caches after the prefill (full rows incl. RoPE).
Prints, per file, the number of rows, max |diff| and the number of bitwise-different values.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_official as ro  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    a = ap.parse_args()
    ck = os.path.join(REPO, "tests", "fixtures", a.config)
    toks = np.load(os.path.join(ck, "tokens", "main.npy")).astype(np.int64)
    om = ro.OfficialModel(ck, "current", max_seq_len=len(toks) + 16, tiebreak="stable")
    calls = []
    orig = om.m.act_quant

    def wrapped(x, *args, **kw):
        out = orig(x, *args, **kw)
        if kw.get("inplace", False) or (len(args) >= 4 and args[3] is True):
            calls.append(x.detach().clone()[0].numpy())
        return out
    om.m.act_quant = wrapped
    om.prefill(toks)
    T = len(toks)
    res = {}
    it = iter(calls)
    win = om.args.window_size
    for li, layer in enumerate(om.model.layers):
        r = om.args.compress_ratios[li]
        raw = next(it)
        assert raw.shape[0] == T, raw.shape
        comp = next(it) if r else None
        p = os.path.join(ck, "simon", f"kv_raw.L{li}.npy")
        if os.path.exists(p):
            ref = np.load(p)[:, :raw.shape[1]]
            res[f"kv_raw.L{li} (nope part)"] = (raw.shape[0], float(np.abs(ref - raw).max()),
                                               int((ref.view(np.uint32) != raw.astype(np.float32).view(np.uint32)).sum()))
        p = os.path.join(ck, "simon", f"kv_comp.L{li}.npy")
        if r and os.path.exists(p):
            full = layer.attn.kv_cache[0, win:win + T // r].numpy()
            ref = np.load(p)
            nope = raw.shape[1]
            res[f"kv_comp.L{li} nope part"] = (ref.shape[0], float(np.abs(ref[:, :nope] - full[:, :nope]).max()),
                                               int((ref[:, :nope] != full[:, :nope]).sum()))
            res[f"kv_comp.L{li} RoPE part"] = (ref.shape[0], float(np.abs(ref[:, nope:] - full[:, nope:]).max()),
                                               int((ref[:, nope:] != full[:, nope:]).sum()))
        p = os.path.join(ck, "simon", f"indexer_kv.L{li}.npy")
        if r == 4 and os.path.exists(p):
            ik = layer.attn.indexer.kv_cache[0, :T // r].numpy()
            ref = np.load(p)
            res[f"indexer_kv.L{li} (Hadamard+FP4 keys)"] = (ref.shape[0], float(np.abs(ref - ik).max()),
                                                            int((ref != ik).sum()))
    for k, v in res.items():
        print(f"{k}: rows {v[0]}, max |diff| {v[1]:.3g}, values that differ {v[2]}")
    json.dump(res, open(os.path.join(REPO, "build", "official-out", f"check_kv.{a.config}.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
