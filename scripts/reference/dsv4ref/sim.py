"""Quantisation-simulation patches for transformers' DeepSeek-V4 (dsv4-architecture.md §9).

transformers 5.24.0 `modeling_deepseek_v4.py` omits every quantisation-simulation step of the
official inference code (verified by reading it: `DeepseekV4Attention.forward` stores
`kv_norm(kv_proj(x))`+RoPE unrounded; the CSA/HCA compressors return `kv_norm(pooled)`+RoPE
unrounded; `DeepseekV4Indexer.forward` feeds RoPE'd q and compressed keys straight to
`DeepseekV4IndexerScorer` with no Hadamard rotation and no FP4 rounding; every nn.Linear runs on
the unquantised activation; routed experts apply the routing weight after `down_proj`).

`install(model, kv_fp8=..., indexer_fp4=..., act_fp8=...)` adds them back with forward hooks on
the model instance (nothing in transformers is edited):

* kv_fp8 (§9.2): FP8 e4m3 round-trip, per 64 channels, of the nope part (first head_dim-rope_dim
  channels) of every raw KV row (`self_attn.kv_norm` output) and of every attention-compressor row
  (`self_attn.compressor.kv_norm` output).  RoPE only touches the last rope_dim channels, so rounding
  the nope part before RoPE (where the hook sits) is identical to OFF's after-RoPE rounding.
* indexer_fp4 (§9.3): before the indexer scorer, queries and compressed keys (both already RoPE'd)
  get the orthonormal Hadamard rotation and an FP4 e2m1 round-trip per 32 channels. The keys are
  rounded row by row, so rounding at scoring time equals OFF's rounding at storage time.
* act_fp8 (§9.1, only meaningful for `tiny-quant`): the input of every GEMM whose official weight is
  FP8/FP4 (wq_a, wq_b, wkv, wo_b, indexer.wq_b, shared w1/w3/w2, routed w1/w3/w2) is FP8
  round-tripped per 128 channels; routed experts apply the routing weight *before* w2 as OFF does.
  wo_a (BF16 in OFF), the compressors, weights_proj, the router and the head are left alone.

`install_tiebreak(model)` makes the indexer's top-k deterministic: transformers uses `torch.topk`, whose
order among equal scores is unspecified and in practice depends on the number of compressed rows in
the call (so a full prefill and prefill+decode pick different rows at exact ties, which are common:
a score is exactly 0 whenever every head's ReLU term is 0). The hook recomputes the selection from
the scorer's output with a stable descending sort: **ties go to the lower row index**. It is
installed in every mode, sim on and off.

`Recorder` collects the tensors the fixtures dump (rounded KV rows, indexer selections and scores,
named intermediates).
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from . import quant


class Handles(list):
    def remove(self):  # noqa: D401
        for h in self:
            h.remove()
        self.clear()


def _attn_modules(model):
    for li, layer in enumerate(model.model.layers):
        yield li, layer, layer.self_attn


def install(model, kv_fp8=True, indexer_fp4=True, act_fp8=False) -> Handles:
    cfg = model.config
    nope = cfg.head_dim - cfg.qk_rope_head_dim
    hs = Handles()

    def kv_hook(mod, inp, out):
        r = out.clone()
        r[..., :nope] = quant.fp8_roundtrip(out[..., :nope], 64)
        return r

    def scorer_pre(mod, args):
        q, ckv, h = args
        return (quant.fp4_roundtrip(quant.hadamard(q), 32), quant.fp4_roundtrip(quant.hadamard(ckv), 32), h)

    def act_pre(mod, args):
        x = args[0]
        if x.shape[-1] % 128 != 0:
            raise ValueError(f"act_fp8 needs K % 128 == 0, got {x.shape[-1]}")
        return (quant.fp8_roundtrip(x, 128),) + tuple(args[1:])

    for li, layer, attn in _attn_modules(model):
        if kv_fp8:
            hs.append(attn.kv_norm.register_forward_hook(kv_hook))
            if attn.compressor is not None:
                hs.append(attn.compressor.kv_norm.register_forward_hook(kv_hook))
        if indexer_fp4 and attn.compressor is not None and hasattr(attn.compressor, "indexer"):
            hs.append(attn.compressor.indexer.scorer.register_forward_pre_hook(scorer_pre))
        if act_fp8:
            mods = [attn.q_a_proj, attn.q_b_proj, attn.kv_proj, attn.o_b_proj,
                    layer.mlp.shared_experts.gate_proj, layer.mlp.shared_experts.up_proj,
                    layer.mlp.shared_experts.down_proj]
            if attn.compressor is not None and hasattr(attn.compressor, "indexer"):
                mods.append(attn.compressor.indexer.q_b_proj)
            for m in mods:
                hs.append(m.register_forward_pre_hook(act_pre))
            hs.append(_patch_experts_act_fp8(layer.mlp.experts))
    return hs


def install_tiebreak(model) -> Handles:
    hs = Handles()
    last = {}

    def scorer_hook(mod, inp, out):
        last[id(mod)] = out

    for li, layer, attn in _attn_modules(model):
        comp = attn.compressor
        if comp is None or not hasattr(comp, "indexer"):
            continue
        idx = comp.indexer

        def indexer_hook(mod, inp, out, idx=idx):
            scores = last.pop(id(idx.scorer))
            if scores.shape[-1] == 0:
                return out
            position_ids = inp[2]
            top_k = min(idx.index_topk, scores.shape[-1])
            thr = ((position_ids + 1) // idx.compress_rate).unsqueeze(-1)  # [B, S, 1]
            j = torch.arange(scores.shape[-1]).view(1, 1, -1)
            masked = scores.masked_fill(j >= thr, float("-inf"))
            order = torch.sort(masked, dim=-1, descending=True, stable=True).indices[..., :top_k]
            return torch.where(order >= thr, torch.full_like(order, -1), order)

        hs.append(idx.scorer.register_forward_hook(scorer_hook))
        hs.append(idx.register_forward_hook(indexer_hook))
    return hs


class _Restore:
    def __init__(self, obj, attr, old):
        self.obj, self.attr, self.old = obj, attr, old

    def remove(self):
        if self.old is None:
            delattr(self.obj, self.attr)
        else:
            setattr(self.obj, self.attr, self.old)


def _patch_experts_act_fp8(experts):
    """Routed experts as OFF computes them: FP8 input, weight applied before w2, FP8 input of w2."""

    def forward(self, hidden_states, top_k_index, top_k_weights):
        final = torch.zeros_like(hidden_states)
        xq = quant.fp8_roundtrip(hidden_states, 128)
        for e in range(self.num_experts):
            tok, pos = torch.where(top_k_index == e)
            if tok.numel() == 0:
                continue
            gu = F.linear(xq[tok], self.gate_up_proj[e])
            h = self._apply_gate(gu) * top_k_weights[tok, pos, None]
            out = F.linear(quant.fp8_roundtrip(h, 128), self.down_proj[e])
            final.index_add_(0, tok, out.to(final.dtype))
        return final

    old = experts.__dict__.get("forward")
    experts.forward = types.MethodType(forward, experts)
    return _Restore(experts, "forward", old)


# ----------------------------------------------------------------------------- recording
class Recorder:
    """Forward hooks that append per-call tensors to lists (call order = prefill, then decode steps)."""

    def __init__(self, model, intermediates=False, indexer=True, kv=True):
        self.model = model
        self.data: dict[str, list] = {}
        self.hs = Handles()
        cfg = model.config
        for li, layer, attn in _attn_modules(model):
            if kv:
                self._hook(attn.kv_norm, f"L{li}.kv_norm_out")
                if attn.compressor is not None:
                    self._hook(attn.compressor.kv_norm, f"L{li}.comp_norm_out")
            if indexer and attn.compressor is not None and hasattr(attn.compressor, "indexer"):
                idx = attn.compressor.indexer
                self._hook(idx, f"L{li}.indexer_topk")
                self._hook(idx.scorer, f"L{li}.indexer_scores")
                self._pre(idx.scorer, f"L{li}.indexer_scorer_in")
            if intermediates:
                self._hook(layer.input_layernorm, f"L{li}.attn_norm")
                self._hook(attn.q_a_norm, f"L{li}.qr")
                self._hook(attn.q_b_norm, f"L{li}.q_normed")
                self._hook(attn.kv_norm, f"L{li}.kv")
                self._hook(attn, f"L{li}.attn_out", idx=0)
                self._pre(layer.ffn_hc, f"L{li}.hc_after_attn", idx=0)
                self._hook(layer.post_attention_layernorm, f"L{li}.ffn_norm")
                self._hook(layer.mlp.gate, f"L{li}.router", idx=None)
                self._hook(layer.mlp, f"L{li}.moe_out")
                self._hook(layer, f"L{li}.l_out")
        if intermediates:
            self._hook(model.model.embed_tokens, "embed")
            self._hook(model.model.hc_head, "hc_head_out")
            self._hook(model.model.norm, "final_norm")

    def _store(self, key, val):
        self.data.setdefault(key, []).append(val)

    def _hook(self, mod, key, idx=None):
        def h(m, inp, out):
            o = out if idx is None else out[idx]
            if isinstance(o, tuple):
                self._store(key, tuple(x.detach().clone() for x in o))
            else:
                self._store(key, o.detach().clone())
        self.hs.append(mod.register_forward_hook(h))

    def _pre(self, mod, key, idx=None):
        def h(m, args):
            a = args if idx is None else args[idx]
            if isinstance(a, tuple):
                self._store(key, tuple(x.detach().clone() for x in a))
            else:
                self._store(key, a.detach().clone())
        self.hs.append(mod.register_forward_pre_hook(h))

    def remove(self):
        self.hs.remove()
