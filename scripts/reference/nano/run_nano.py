#!/usr/bin/env python3
"""Run PyPI nano-deepseek-v4==0.2.0 (a third-party compact re-implementation) on one of our
checkpoints (tests/fixtures/<config>/{config.json,model.safetensors}, official tensor names) and
dump per-position logits, as a further outside opinion next to transformers and the official code.

Nothing is patched in nano: config via DeepSeekV4Config.from_official_json (our config.json is
completed with the root-config keys it requires when they are absent), weights via
load_deepseek_official_checkpoint (its own FP8/FP4 dequantisation), float32 on CPU.
Modes: one full prefill (all positions), and prefill N + one token at a time through its
DeepSeekV4Cache (use_cache=True).

Where nano 0.2.0 departs from the official code (read from its modeling.py, located with
diagnose_nano.py): mHC (post = sigmoid+eps instead of 2*sigmoid, comb = sigmoid-based Sinkhorn
instead of softmax-based, comb applied transposed); RoPE of q/KV uses rope_theta in every layer
(official: compress_rope_theta with YaRN in compressed layers) and compressed rows get no YaRN;
no quantisation simulation (no FP8 KV round-trip, no Hadamard/FP4 indexer rounding, no activation
FP8); MTP takes the trunk's hc_head+norm output (one stream) instead of the 4 HC streams.
See tests/fixtures/agreement-official.md.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import torch


def nano_config(cfg):
    from nano_deepseek_v4 import DeepSeekV4Config
    c = dict(cfg)
    n = c["num_hidden_layers"]
    if "compress_ratios" not in c:
        lt = {"sliding_attention": 0, "compressed_sparse_attention": 4, "heavily_compressed_attention": 128}
        c["compress_ratios"] = [lt[t] for t in c["layer_types"]]
    if "num_hash_layers" not in c and c.get("mlp_layer_types"):
        c["num_hash_layers"] = sum(1 for t in c["mlp_layer_types"] if t == "hash_moe")
    if "qk_rope_head_dim" not in c:
        c["qk_rope_head_dim"] = int(c["head_dim"] * c.get("partial_rotary_factor", 64 / 512))
    c.setdefault("max_position_embeddings", 1 << 20)
    c.setdefault("routed_scaling_factor", 1.5)
    # nano expects one compress ratio per trunk layer
    c["compress_ratios"] = list(c["compress_ratios"])[:n]
    return DeepSeekV4Config.from_official_json(c), c


class NanoModel:
    def __init__(self, ckpt_dir):
        from nano_deepseek_v4 import DeepSeekV4ForCausalLM, load_deepseek_official_checkpoint
        torch.set_default_dtype(torch.float32)
        torch.manual_seed(0)
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            cfg = json.load(f)
        self.config, _ = nano_config(cfg)
        self.model = DeepSeekV4ForCausalLM(self.config).eval()
        rep = load_deepseek_official_checkpoint(self.model, ckpt_dir)
        self.report = rep
        self.missing = list(rep.missing_keys)
        self.unexpected = list(rep.unexpected_keys)

    @torch.no_grad()
    def prefill(self, tokens):
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)[None]
        return self.model(ids).logits[0].float().numpy()

    @torch.no_grad()
    def prefill_decode(self, tokens, n_prefill):
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)[None]
        out = self.model(ids[:, :n_prefill], use_cache=True)
        logits = [out.logits[0].float().numpy()]
        cache = out.past_key_values
        for p in range(n_prefill, ids.shape[1]):
            out = self.model(ids[:, p:p + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[0].float().numpy())
        return np.concatenate(logits, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--prefill", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    toks = np.load(a.tokens).astype(np.int64).reshape(-1)
    nm = NanoModel(a.ckpt)
    print("missing:", nm.missing, "unexpected:", nm.unexpected)
    lg = nm.prefill(toks) if a.prefill is None else nm.prefill_decode(toks, a.prefill)
    np.save(a.out, lg.astype(np.float32))


if __name__ == "__main__":
    main()
