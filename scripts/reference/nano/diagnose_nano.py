#!/usr/bin/env python3
"""Locate where nano-deepseek-v4 0.2.0 departs from the official code (diagnostic, not a fixture).

Runs both on tests/fixtures/<config> (official with its quantisation simulation switched off, so
that only semantics are compared) for the first N tokens of tokens/main and prints, per trunk
layer, the NMSE of the 4 HC streams after the layer -- once for nano as published and once with
nano's HyperConnection replaced by the official mHC maths (our patch, below):

  official hc_pre/hc_post (model.py Block.hc_pre / hc_post, kernel hc_split_sinkhorn):
    pre  = sigmoid(m·s0 + b) + eps
    post = 2·sigmoid(m·s1 + b)                     (nano: sigmoid(...) + eps)
    comb = softmax_row(m·s2 + b) + eps; col-normalise; (iters-1)×(row, col)
                                                   (nano: sigmoid(...) + eps; iters×(row, col))
    new stream k = post_k·f(x) + Σ_j comb[j][k]·X_j (nano: Σ_j comb[k][j]·X_j)

    cd scripts/reference && .venv/bin/python nano/diagnose_nano.py [--config tiny] [--tokens 64]
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "official"))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def official_hc_forward(self, streams):
    flat = self.input_norm(streams.flatten(start_dim=2).float())
    mix = F.linear(flat, self.fn.float())
    s = self.scale.float()
    hc = self.hc_mult
    b = self.base.float()
    pre = torch.sigmoid(mix[..., :hc] * s[0] + b[:hc]) + self.eps
    post = 2 * torch.sigmoid(mix[..., hc:2 * hc] * s[1] + b[hc:2 * hc])
    comb = mix[..., 2 * hc:].unflatten(-1, (hc, hc)) * s[2] + b[2 * hc:].view(hc, hc)
    comb = comb.softmax(-1) + self.eps
    comb = comb / (comb.sum(-2, keepdim=True) + self.eps)
    for _ in range(self.sinkhorn_iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + self.eps)
        comb = comb / (comb.sum(-2, keepdim=True) + self.eps)
    collapsed = (pre.unsqueeze(-1) * streams).sum(dim=2).to(streams.dtype)
    # nano's layer computes matmul(comb, streams); hand it comb^T so that stream k gets
    # sum_j comb[j][k] X_j as in the official hc_post
    return post.to(streams.dtype), comb.transpose(-1, -2).to(streams.dtype), collapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    import run_nano
    import run_official as ro
    import nano_deepseek_v4.modeling as nmod
    ck = os.path.join(REPO, "tests", "fixtures", a.config)
    toks = np.load(os.path.join(ck, "tokens", "main.npy"))[:a.tokens].astype(np.int64)
    ro.cpu_kernels.SIM.update(kv_fp8=False, indexer_fp4=False, act_fp8=False)
    om = ro.OfficialModel(ck, "current", max_seq_len=a.tokens + 16)
    A = {}
    for i, l in enumerate(om.model.layers):
        l.register_forward_hook(lambda m, inp, out, i=i: A.__setitem__(i, out.clone()))
    lo, _ = om.prefill(toks)
    orig = nmod.HyperConnection.forward
    for label, fwd in [("nano as published", orig), ("nano + official mHC (our patch)", official_hc_forward)]:
        nmod.HyperConnection.forward = fwd
        nm = run_nano.NanoModel(ck)
        B = {}
        for i, l in enumerate(nm.model.model.layers):
            l.register_forward_hook(lambda m, inp, out, i=i: B.__setitem__(i, out[0].clone()))
        ln = nm.prefill(toks)
        print(f"{label}:")
        for i in sorted(A):
            x, y = B[i].double(), A[i].double()
            print(f"  after layer {i} (compress ratio {om.args.compress_ratios[i]}): HC-stream NMSE "
                  f"{(((x - y) ** 2).sum() / (y ** 2).sum()).item():.2e}")
        n = ((ln.astype(np.float64) - lo) ** 2).sum(-1) / (lo.astype(np.float64) ** 2).sum(-1)
        print(f"  logits NMSE max {n.max():.2e} median {np.median(n):.2e}; top-1 "
              f"{(ln.argmax(-1) == lo.argmax(-1)).mean():.3f}")
    nmod.HyperConnection.forward = orig


if __name__ == "__main__":
    main()
