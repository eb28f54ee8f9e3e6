#!/usr/bin/env python3
"""Explain official vs transformers differences on tokens/long (tiny, 8192-token prefill).

Runs one full prefill of tokens/long through the official code (official_stable) and through the
fixtures' transformers model with the same simulation (dsv4ref library, `simon` hooks + tie-break),
and reports per CSA layer the first positions where the indexer selections differ and how close
the competing scores are (|s_a - s_b| relative to the k-th score) in the transformers scores,
plus the first position whose logits differ by NMSE > 1e-6.

    cd scripts/reference && .venv/bin/python official/diagnose_long.py [--config tiny] [--mode simon]
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import run_official as ro  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--mode", default="simon", choices=["simon", "simoff"])
    ap.add_argument("--tokens", type=int, default=None, help="use only the first N tokens of the sequence")
    ap.add_argument("--seq", default="long", choices=["long", "main", "short"])
    a = ap.parse_args()
    from dsv4ref import configs, fixtures, hfmodel, sim, weights
    ck = os.path.join(REPO, "tests", "fixtures", a.config)
    L = fixtures.token_sequences(configs.get(a.config))[a.seq].astype(np.int64)   # = tokens/<seq>.npy
    if a.tokens:
        L = L[:a.tokens]
    on = a.mode == "simon"
    ro.cpu_kernels.SIM.update(kv_fp8=on, indexer_fp4=on, act_fp8=on)
    om = ro.OfficialModel(ck, "current", max_seq_len=len(L) + 16, tiebreak="stable")
    kv_calls, o_route = [], {}
    orig_aq = om.m.act_quant

    def aq(x, *args, **kw):
        out = orig_aq(x, *args, **kw)
        if kw.get("inplace", False) or (len(args) >= 4 and args[3] is True):
            kv_calls.append(x.detach().clone()[0].numpy())
        return out
    om.m.act_quant = aq
    for li, layer in enumerate(om.model.layers):
        layer.ffn.gate.register_forward_hook(lambda m, i, o, li=li: o_route.__setitem__(li, o[1].clone().numpy()))
    lo, _ = om.prefill(L)
    o_raw = {}
    it = iter(kv_calls)
    for li in range(len(om.model.layers)):
        o_raw[li] = next(it)
        if om.args.compress_ratios[li]:
            next(it)
    osel = {li: s[0] for li, s in om.selections.items()}
    del om
    cfg = configs.get(a.config)
    fixtures.set_determinism()
    torch.set_num_threads(2)
    model, _ = hfmodel.build_model(cfg, weights.values_dict(weights.make_weights(cfg)))
    hs = sim.install(model, **fixtures.SIM_MODES[a.mode])
    if hasattr(sim, "install_tiebreak"):
        hs2 = sim.install_tiebreak(model)
    rec = sim.Recorder(model, intermediates=False, indexer=True, kv=True)
    h_route = {}
    for li, layer in enumerate(model.model.layers):
        layer.mlp.gate.register_forward_hook(lambda m, i, o, li=li: h_route.__setitem__(li, o))
    lh = fixtures.run_prefill(model, L).numpy()
    for li in o_raw:
        hr = rec.data[f"L{li}.kv_norm_out"][0][0].numpy()[:, :o_raw[li].shape[1]]
        d = np.nonzero((hr != o_raw[li]).any(-1))[0]
        print(f"L{li}: raw KV rows whose FP8-rounded nope part differs: {len(d)}, first {d[:8].tolist()}")
    for li in o_route:
        ho = h_route[li]
        hidx = [t for t in (ho if isinstance(ho, tuple) else (ho,)) if t.dtype in (torch.int64, torch.int32)]
        if hidx:
            hi = np.sort(hidx[0].reshape(len(L), -1).numpy(), -1)
            oi = np.sort(o_route[li].reshape(len(L), -1), -1)
            d = np.nonzero((hi != oi).any(-1))[0]
            print(f"L{li}: positions whose routed experts differ: {len(d)}, first {d[:8].tolist()}")
    n = ((lo.astype(np.float64) - lh) ** 2).sum(-1) / (lh.astype(np.float64) ** 2).sum(-1)
    bad = np.nonzero(n > 1e-6)[0]
    print(f"{a.mode}: logits NMSE max {n.max():.2e} median {np.median(n):.2e}; positions with NMSE > 1e-6: "
          f"{len(bad)}, first {bad[:8].tolist()}")
    for k, v in rec.data.items():
        if not k.endswith(".indexer_topk"):
            continue
        li = int(k.split(".")[0][1:])
        hsel = v[0][0].numpy()
        sc = rec.data[f"L{li}.indexer_scores"][0][0].numpy()
        diff = [p for p in range(len(L)) if set(osel[li][p][osel[li][p] >= 0].tolist())
                != set(hsel[p][hsel[p] >= 0].tolist())]
        print(f"L{li}: selections differ at {len(diff)} positions; first: {diff[:8]}")
        for p in diff[:5]:
            A = set(osel[li][p][osel[li][p] >= 0].tolist())
            B = set(hsel[p][hsel[p] >= 0].tolist())
            s = sc[p].copy()
            s[(p + 1) // 4:] = -np.inf          # rows not yet visible at p (the raw scorer output is unmasked)
            kth = np.sort(s[np.isfinite(s)])[::-1][len(B) - 1]
            print(f"   p={p} (k-th score {kth:.9g}): official-only rows {sorted(A - B)} scores {[float(s[j]) for j in sorted(A - B)]}, "
                  f"transformers-only rows {sorted(B - A)} scores {[float(s[j]) for j in sorted(B - A)]}")


if __name__ == "__main__":
    main()
