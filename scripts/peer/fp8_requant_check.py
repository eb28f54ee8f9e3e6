#!/usr/bin/env python3
"""How exactly does the upstream converter carry the official FP8/FP4 weights into GGUF?

Compares, per tensor, the exact dequantization of the checkpoint (FP8 e4m3 x 128x128 E8M0 block
scales; FP4 e2m1 x per-32 E8M0) with gguf-py's dequantization of the converter's Q8_0 / MXFP4
tensors. Run with build/peer/conv-venv/bin/python:

  fp8_requant_check.py CHECKPOINT_DIR CONVERTED.gguf
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import gguf
from gguf.quants import dequantize
from safetensors import safe_open

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)
DENSE = {"attn_q_a": "attn.wq_a", "attn_q_b": "attn.wq_b", "attn_kv": "attn.wkv", "attn_output_a": "attn.wo_a",
         "attn_output_b": "attn.wo_b", "ffn_gate_shexp": "ffn.shared_experts.w1",
         "ffn_down_shexp": "ffn.shared_experts.w2", "ffn_up_shexp": "ffn.shared_experts.w3",
         "indexer.attn_q_b": "attn.indexer.wq_b"}
EXPERTS = {"ffn_gate_exps": "w1", "ffn_up_exps": "w3", "ffn_down_exps": "w2"}


def e8m0(s: torch.Tensor) -> np.ndarray:
    return np.exp2(s.view(torch.uint8).numpy().astype(np.float64) - 127.0)


def main() -> None:
    ckpt, path = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(path)
    T = {t.name: t for t in r.tensors}
    f = safe_open(f"{ckpt}/model.safetensors", "pt")
    keys = set(f.keys())
    n_layers = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("layers."))
    print("tensor                        gguf   exact?  NMSE vs exact   max|rel err|  frac changed")
    for il in range(n_layers):
        for g, h in DENSE.items():
            n = f"layers.{il}.{h}.weight"
            if n not in keys or f"blk.{il}.{g}.weight" not in T:
                continue
            w = f.get_tensor(n).float().numpy().astype(np.float64)
            sc = e8m0(f.get_tensor(f"layers.{il}.{h}.scale"))
            sf = np.repeat(np.repeat(sc, 128, 0)[: w.shape[0]], 128, 1)[:, : w.shape[1]]
            exact = w * sf
            t = T[f"blk.{il}.{g}.weight"]
            q = dequantize(np.asarray(t.data), t.tensor_type).reshape(exact.shape).astype(np.float64)
            nz = exact != 0
            print(f"blk.{il}.{g:<22} {t.tensor_type.name:<6} {str(np.array_equal(q, exact)):<7} "
                  f"{((q - exact) ** 2).sum() / (exact ** 2).sum():.3e}      "
                  f"{(np.abs(q - exact)[nz] / np.abs(exact[nz])).max():.3f}         {(q != exact).mean():.3f}")
        for g, h in EXPERTS.items():
            name = f"blk.{il}.{g}.weight"
            if name not in T:
                continue
            t = T[name]
            q = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float64)
            ex = []
            for e in range(q.shape[0]):
                b = f.get_tensor(f"layers.{il}.ffn.experts.{e}.{h}.weight").view(torch.uint8).numpy()
                vals = np.stack([E2M1[b & 15], E2M1[b >> 4]], -1).reshape(b.shape[0], -1)
                ex.append(vals * np.repeat(e8m0(f.get_tensor(f"layers.{il}.ffn.experts.{e}.{h}.scale")), 32, 1))
            ex = np.stack(ex)
            same = np.array_equal(q.reshape(ex.shape), ex)
            print(f"blk.{il}.{g:<22} {t.tensor_type.name:<6} {str(same):<7} "
                  f"{((q.reshape(ex.shape) - ex) ** 2).sum() / (ex ** 2).sum():.3e}")


if __name__ == "__main__":
    main()
