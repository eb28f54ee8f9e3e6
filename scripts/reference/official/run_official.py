#!/usr/bin/env python3
"""Run the OFFICIAL DeepSeek-V4 inference code (model.py) on CPU in float32 on one of our
checkpoints, and dump per-position logits (and MTP logits).

The official code is NOT in this repository: scripts/reference/official/fetch.sh extracts it
(pinned commits, sha256 in SOURCES.sha256) to build/official-src/{initial,current}/, and this
script imports it from there. Everything we change is a monkeypatch in this file or a kernel in
cpu_kernels.py, listed here:

  P1 kernels: model.py imports its six kernels from ``kernel``. We register as ``kernel`` the Pro
     mirror's pure-PyTorch kernel.py (sparse_attn, hc_split_sinkhorn, hadamard_transform used
     unchanged) with act_quant / fp4_act_quant / fp8_gemm / fp4_gemm replaced by cpu_kernels.py
     (tilelang semantics of the selected revision: see that file).
  P2 float32: torch default dtype float32; after construction every bfloat16 parameter
     (Linear weights of a "bf16" model, wo_a, indexer.weights_proj, norms are already fp32) is
     turned into float32 and loaded from the checkpoint without rounding. KV caches and all
     activations are therefore float32 (official: bf16). FP8/FP4 weights stay FP8/FP4.
  P3 rotate_activation: the official function asserts bf16 input; ours is the same call
     (hadamard_transform(x, scale=d**-0.5), Sylvester order, from the Pro kernel.py fallback)
     without the assert.
  P4 logits at every position: ParallelHead.get_logits projects only x[:, -1] (the official
     generate loop needs only the last position); we project every position. The last position
     is unchanged; prefill logits at other positions are what the official model *would* give.
  P5 loading: the checkpoint (official tensor names) is mapped as the official convert.py does
     with --model-parallel 1 (strip "model.", drop mtp.*emb*/mtp.*head.weight, V3 renames,
     wo_a dequantised to float when it has a .scale, I8 experts viewed as float4_e2m1fn_x2 when
     expert_dtype == fp4); values are assigned without rounding (convert.py would cast the
     dequantised wo_a to bf16, which is exact for FP8*2^k values).
  P6 state reset: the official model keeps compressor state / KV caches in buffers and never
     resets them; we zero them (kv_state=0, score_state=-inf, caches=0) before every sequence,
     which is the state a freshly constructed model has.

Usage (library): see OfficialModel below; CLI: --ckpt DIR --tokens X.npy --prefill N --out Y.npy
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SRC = os.environ.get("OFFICIAL_SRC", os.path.join(REPO, "build", "official-src"))
sys.path.insert(0, HERE)
import cpu_kernels  # noqa: E402


def _load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def import_official(revision="current"):
    """Import model.py of the given revision with our kernel module. Returns the model module."""
    for n in ("kernel", "model"):
        sys.modules.pop(n, None)
    kpath = os.path.join(SRC, "current", "kernel.py")   # pure-PyTorch kernels (Pro mirror)
    mpath = os.path.join(SRC, revision, "model.py")
    if not (os.path.exists(kpath) and os.path.exists(mpath)):
        raise SystemExit(f"official sources missing under {SRC}: run scripts/reference/official/fetch.sh")
    kernel = _load_module("kernel", kpath)
    cpu_kernels.REVISION = revision
    for fn in ("act_quant", "fp4_act_quant", "fp8_gemm", "fp4_gemm"):      # P1
        setattr(kernel, fn, getattr(cpu_kernels, fn))
    model = _load_module("model", mpath)

    def rotate_activation(x):                                              # P3
        return kernel.hadamard_transform(x, scale=x.size(-1) ** -0.5)
    model.rotate_activation = rotate_activation

    def get_logits(self, x):                                               # P4
        return F.linear(x.float(), self.weight)
    model.ParallelHead.get_logits = get_logits
    return model


def install_stable_topk(model):
    """Diagnostic (ours, off by default): make the indexer's top-k pick, among exactly equal scores,
    the lower row index (stable descending sort), the convention of the transformers fixtures
    (dsv4ref.sim.install_tiebreak). The official code calls torch.topk, whose order among ties is
    unspecified (on CPU it depends on the number of columns, i.e. on the call shape)."""
    orig_fwd = model.Indexer.forward
    orig_topk = torch.Tensor.topk

    def stable_topk(self, k, dim=-1, largest=True, sorted=True):
        assert largest
        v, i = torch.sort(self, dim=dim, descending=True, stable=True)
        return torch.return_types.topk((v.narrow(dim, 0, k), i.narrow(dim, 0, k)))

    def forward(self, *a, **kw):
        torch.Tensor.topk = stable_topk
        try:
            return orig_fwd(self, *a, **kw)
        finally:
            torch.Tensor.topk = orig_topk
    model.Indexer.forward = forward


def model_args_from_config(cfg, max_seq_len):
    """Map config.json (HF/official root format, or official inference/config.json) to
    ModelArgs keyword arguments."""
    if "dim" in cfg:       # already inference/config.json format
        a = {k: v for k, v in cfg.items()}
    else:
        rs = cfg.get("rope_scaling") or {}
        rp = cfg.get("rope_parameters") or {}
        if not rs and isinstance(rp, dict) and "compress" in rp:
            rs = rp["compress"]
        n_layers = cfg["num_hidden_layers"]
        n_mtp = cfg.get("num_nextn_predict_layers", 1)
        cr = cfg.get("compress_ratios")
        if cr is None:
            lt = {"sliding_attention": 0, "compressed_sparse_attention": 4,
                  "heavily_compressed_attention": 128}
            cr = [lt[t] for t in cfg["layer_types"]]
        cr = list(cr) + [0] * max(0, n_layers + n_mtp - len(cr))
        n_hash = cfg.get("num_hash_layers")
        if n_hash is None and cfg.get("mlp_layer_types"):
            n_hash = sum(1 for t in cfg["mlp_layer_types"] if t == "hash_moe")
        q = cfg.get("quantization_config") or {}
        a = dict(
            vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"],
            moe_inter_dim=cfg["moe_intermediate_size"], n_layers=n_layers,
            n_hash_layers=n_hash or 0, n_mtp_layers=n_mtp, n_heads=cfg["num_attention_heads"],
            n_routed_experts=cfg["n_routed_experts"], n_shared_experts=cfg.get("n_shared_experts", 1),
            n_activated_experts=cfg["num_experts_per_tok"],
            score_func=cfg.get("scoring_func", "sqrtsoftplus"),
            route_scale=cfg.get("routed_scaling_factor", 1.0),
            swiglu_limit=cfg.get("swiglu_limit", 0.0), q_lora_rank=cfg["q_lora_rank"],
            head_dim=cfg["head_dim"],
            rope_head_dim=cfg.get("qk_rope_head_dim") or int(cfg["head_dim"] * cfg["partial_rotary_factor"]),
            norm_eps=cfg.get("rms_norm_eps", 1e-6), o_groups=cfg["o_groups"],
            o_lora_rank=cfg["o_lora_rank"], window_size=cfg["sliding_window"],
            compress_ratios=tuple(cr),
            compress_rope_theta=cfg.get("compress_rope_theta", rs.get("rope_theta", 160000.0)),
            original_seq_len=rs.get("original_max_position_embeddings", 0),
            rope_theta=cfg.get("rope_theta", 10000.0), rope_factor=rs.get("factor", 1.0),
            beta_fast=rs.get("beta_fast", 32), beta_slow=rs.get("beta_slow", 1),
            index_n_heads=cfg["index_n_heads"], index_head_dim=cfg["index_head_dim"],
            index_topk=cfg["index_topk"], hc_mult=cfg.get("hc_mult", 4),
            hc_sinkhorn_iters=cfg.get("hc_sinkhorn_iters", 20), hc_eps=cfg.get("hc_eps", 1e-6),
            dtype="fp8" if q.get("quant_method") == "fp8" else "bf16",
            expert_dtype=cfg.get("expert_dtype") or q.get("expert_dtype"),
        )
        if q.get("quant_method") == "fp8":
            # official inference config: scale_fmt ue8m0 and (ModelArgs default) scale_dtype fp8
            a["scale_fmt"] = q.get("scale_fmt", "ue8m0")
    a["max_seq_len"] = max_seq_len
    a["max_batch_size"] = 1
    return a


def convert_names(sd, expert_dtype):
    """Official convert.py renaming for --model-parallel 1 (P5)."""
    mapping = {"embed_tokens": "embed", "input_layernorm": "attn_norm",
               "post_attention_layernorm": "ffn_norm", "q_proj": "wq", "q_a_proj": "wq_a",
               "q_a_layernorm": "q_norm", "q_b_proj": "wq_b", "kv_a_proj_with_mqa": "wkv_a",
               "kv_a_layernorm": "kv_norm", "kv_b_proj": "wkv_b", "o_proj": "wo",
               "gate_proj": "w1", "down_proj": "w2", "up_proj": "w3", "lm_head": "head"}
    out = {}
    for name, t in sd.items():
        if name.startswith("model."):
            name = name[len("model."):]
        if name.startswith("mtp.") and ("emb" in name or name.endswith("head.weight")):
            continue
        name = name.replace("self_attn", "attn").replace("mlp", "ffn")
        name = name.replace("weight_scale_inv", "scale").replace("e_score_correction_bias", "bias")
        if any(x in name for x in ["hc", "attn_sink", "tie2eid", "ape"]):
            key = name.split(".")[-1]
        else:
            key = name.split(".")[-2]
        if key in mapping:
            name = name.replace(key, mapping[key])
        out[name] = t
    for name in list(out):
        if name.endswith("wo_a.weight") and name.replace("weight", "scale") in out:
            # convert.py: weight.unflatten(0, (-1, 128)).unflatten(-1, (-1, 128)).float() * scale -> bf16;
            # that needs both dims % 128 == 0; the same block dequantisation written for any shape:
            w = out[name]
            s = cpu_kernels._scale_f32(out.pop(name.replace("weight", "scale")))
            N, K = w.shape
            out[name] = w.float() * s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:N, :K]
        elif "experts" in name and "shared_experts" not in name and out[name].dtype == torch.int8:
            assert expert_dtype == "fp4", "I8 experts need expert_dtype fp4"
            out[name] = out[name].view(torch.float4_e2m1fn_x2)
    return out


class OfficialModel:
    def __init__(self, ckpt_dir, revision="current", max_seq_len=512, threads=None, tiebreak="topk",
                 dtype="fp32"):
        from safetensors import safe_open
        if threads:
            torch.set_num_threads(threads)
        self.revision = revision
        self.m = import_official(revision)
        if tiebreak == "stable":
            install_stable_topk(self.m)
        cpu_kernels._WCACHE.clear()   # dequantised-weight cache is keyed by data_ptr
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            self.cfg = json.load(f)
        kw = model_args_from_config(self.cfg, max_seq_len)
        # P2 (dtype="bf16" skips it: the official numerics, bf16 default dtype and bf16 weights, as
        # generate.py runs it; diagnostic only)
        self.dtype = dtype
        torch.set_default_dtype(torch.bfloat16 if dtype == "bf16" else torch.float32)
        torch.manual_seed(0)
        self.args = self.m.ModelArgs(**kw)
        # torch.empty / clone of float4 tensors cannot be "deterministically" filled: loading runs with
        # deterministic algorithms off (restored below)
        det = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        self.model = self.m.Transformer(self.args)
        sd = {}
        files = sorted(f for f in os.listdir(ckpt_dir) if f.endswith(".safetensors"))
        for fn in files:
            with safe_open(os.path.join(ckpt_dir, fn), framework="pt") as f:
                for k in f.keys():
                    sd[k] = f.get_tensor(k)
        sd = convert_names(sd, self.args.expert_dtype)
        params = dict(self.model.named_parameters())
        missing = [k for k in params if k not in sd]
        unexpected = [k for k in sd if k not in params]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint mismatch: missing={missing[:20]} unexpected={unexpected[:20]}")
        for k, p in params.items():
            src = sd[k]
            if p.dtype == torch.bfloat16 and dtype == "bf16":
                p.data = src.to(torch.bfloat16).clone()
            elif p.dtype in (torch.float32, torch.bfloat16):
                p.data = src.to(torch.float32).clone()                      # P2 (bf16 -> fp32)
            elif p.dtype == torch.int32:
                p.data = src.to(torch.int32).clone()
            else:
                assert src.dtype == p.dtype and src.shape == p.shape, (k, src.dtype, p.dtype, src.shape, p.shape)
                p.data = src.clone()
            assert tuple(p.shape) == tuple(src.shape) or p.dtype != src.dtype, k
        torch.use_deterministic_algorithms(det)
        self.loaded_dtypes = sorted({str(src.dtype) for src in sd.values()})
        self.hooked = None
        self.model.layers[-1].register_forward_hook(self._hook)
        # indexer selections (compressed-row indices, -1 = none) per CSA layer, per call
        self.selections = {}
        self.force_sel = None   # {layer: int array [T, k]} to replace the indexer's choice (diagnostic)
        for li, layer in enumerate(self.model.layers):
            if getattr(layer.attn, "indexer", None) is not None:
                layer.attn.indexer.register_forward_hook(self._sel_hook(li))

    def _sel_hook(self, li):
        def hook(mod, inp, out):
            x, qr, start_pos, offset = inp
            sel = torch.where(out >= 0, out - offset, out)
            if self.force_sel is not None and li in self.force_sel:
                f = torch.as_tensor(self.force_sel[li])
                seqlen = x.shape[1]
                f = f[:seqlen] if start_pos == 0 else f[start_pos:start_pos + 1]
                f = f[:, :out.shape[-1]].to(out.dtype)[None]
                assert f.shape == out.shape, (f.shape, out.shape)
                sel = f
                out = torch.where(f >= 0, f + offset, f)
            self.selections.setdefault(li, []).append(sel[0].clone().numpy())
            return out
        return hook

    def _hook(self, mod, inp, out):
        self.hooked = out

    def reset(self):                                                        # P6
        for mod in self.model.modules():
            if isinstance(mod, self.m.Compressor):
                mod.kv_state.zero_()
                mod.score_state.fill_(float("-inf"))
            for name, b in mod.named_buffers(recurse=False):
                if name == "kv_cache":
                    b.zero_()

    def prefill(self, tokens):
        """Logits [T, V] for one prefill (start_pos=0) of tokens; also returns trunk HC states."""
        self.reset()
        self.selections = {}
        x = torch.as_tensor(np.asarray(tokens), dtype=torch.long)[None]
        logits = self.model(x, 0)
        return logits[0].float().numpy(), self.hooked[0].clone()

    def prefill_decode(self, tokens, n_prefill, keep=None):
        """Prefill tokens[:n_prefill] (its logits at all positions), then feed the rest one token
        at a time (start_pos = position), recording each step's logits."""
        self.reset()
        self.selections = {}
        toks = torch.as_tensor(np.asarray(tokens), dtype=torch.long)[None]
        T = toks.shape[1]
        out = np.zeros((T, self.args.vocab_size), np.float32)
        out[:n_prefill] = self.model(toks[:, :n_prefill], 0)[0].float().numpy()
        for p in range(n_prefill, T):
            lg = self.model(toks[:, p:p + 1], p)
            if keep is None or p in keep:
                out[p] = lg[0, -1].float().numpy()
        return out

    def mtp(self, h, next_tokens, mode="prefill"):
        """MTP logits: h = trunk HC states [T, hc, D] at positions 0..T-1 (before hc_head),
        next_tokens = tokens at positions 1..T. Output [T, V]: row t predicts token t+2."""
        blk = self.model.mtp[0]
        for name, b in blk.named_buffers():
            if name.endswith("kv_cache"):
                b.zero_()
        ids = torch.as_tensor(np.asarray(next_tokens), dtype=torch.long)[None]
        h = h[None]
        if mode == "prefill":
            return blk(h, 0, ids)[0].float().numpy()
        out = []
        for t in range(ids.shape[1]):
            out.append(blk(h[:, t:t + 1], t, ids[:, t:t + 1])[0, -1].float().numpy())
        return np.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokens", required=True, help=".npy of int token ids (1-D)")
    ap.add_argument("--prefill", type=int, default=None, help="prefill length (default: all = one prefill)")
    ap.add_argument("--revision", default="current", choices=["current", "initial"])
    ap.add_argument("--tiebreak", default="topk", choices=["topk", "stable"],
                    help="indexer top-k among exact ties: torch.topk (official) or lower index first")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    toks = np.load(a.tokens).astype(np.int64).reshape(-1)
    om = OfficialModel(a.ckpt, a.revision, max_seq_len=max(len(toks) + 8, 64), tiebreak=a.tiebreak)
    if a.prefill is None or a.prefill >= len(toks):
        lg, _ = om.prefill(toks)
    else:
        lg = om.prefill_decode(toks, a.prefill)
    np.save(a.out, lg.astype(np.float32))


if __name__ == "__main__":
    main()
