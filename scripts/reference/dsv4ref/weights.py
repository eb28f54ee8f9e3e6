"""Seeded synthetic weights in the OFFICIAL checkpoint layout (dsv4-architecture.md §3.2).

`make_weights(args)` returns an ordered list of `Tensor` records. Each has
  * `name`     official safetensors name (no `model.` prefix)
  * `value`    float32 numpy array of the *effective* logical values the reference uses
               (for FP8/FP4 tensors: the dequantised values; for BF16: bf16-rounded values)
  * `stored`   dict name -> torch tensor exactly as written to model.safetensors
               (weight plus `.scale` companion for FP8/FP4)
  * `kind`     fp8 | fp4 | bf16 | f32 | i64

Every tensor draws from its own PCG64 stream seeded by sha256(f"{seed}:{name}"), so changing
one tensor (or the vocab size) never perturbs the others.
"""
from __future__ import annotations

import dataclasses
import hashlib

import ml_dtypes
import numpy as np
import torch

from . import quant


@dataclasses.dataclass
class Tensor:
    name: str
    kind: str
    value: np.ndarray
    stored: dict


def _rng(seed: int, name: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(h[:16], "little")))


def layer_ratio(a: dict, i: int) -> int:
    return a["compress_ratios"][i]


def tensor_specs(a: dict):
    """Yield (name, shape, kind, init) in a stable order. kind: gemm | bf16 | norm | f32 | expert | tid2eid."""
    D, H, Dh = a["dim"], a["n_heads"], a["head_dim"]
    qr, G, Ro = a["q_lora_rank"], a["o_groups"], a["o_lora_rank"]
    E, I, k = a["n_routed_experts"], a["moe_inter_dim"], a["n_activated_experts"]
    nI, dI = a["index_n_heads"], a["index_head_dim"]
    hc = a["hc_mult"]
    mix = (2 + hc) * hc
    V = a["vocab_size"]
    Is = I * a["n_shared_experts"]

    yield "embed.weight", (V, D), "bf16", ("normal", 1.0)

    def block(p: str, li: int, is_mtp: bool):
        r = layer_ratio(a, li)
        hashed = (not is_mtp) and li < a["n_hash_layers"]
        if is_mtp:
            yield p + "e_proj.weight", (D, D), "gemm", ("fanin", 1.0)
            yield p + "h_proj.weight", (D, D), "gemm", ("fanin", 1.0)
            yield p + "enorm.weight", (D,), "norm", ("norm",)
            yield p + "hnorm.weight", (D,), "norm", ("norm",)
        yield p + "attn_norm.weight", (D,), "norm", ("norm",)
        yield p + "ffn_norm.weight", (D,), "norm", ("norm",)
        for s in ("attn", "ffn"):
            yield p + f"hc_{s}_fn", (mix, hc * D), "f32", ("fanin", 1.0)
            yield p + f"hc_{s}_base", (mix,), "f32", ("normal", 1.0)
            yield p + f"hc_{s}_scale", (3,), "f32", ("scale",)
        yield p + "attn.attn_sink", (H,), "f32", ("normal", 1.0)
        yield p + "attn.wq_a.weight", (qr, D), "gemm", ("fanin", 1.0)
        yield p + "attn.q_norm.weight", (qr,), "norm", ("norm",)
        yield p + "attn.wq_b.weight", (H * Dh, qr), "gemm", ("fanin", 1.0)
        yield p + "attn.wkv.weight", (Dh, D), "gemm", ("fanin", 1.0)
        yield p + "attn.kv_norm.weight", (Dh,), "norm", ("norm",)
        yield p + "attn.wo_a.weight", (G * Ro, H * Dh // G), "gemm", ("fanin", 1.0)
        yield p + "attn.wo_b.weight", (D, G * Ro), "gemm", ("fanin", 1.0)
        if r:
            coff = 2 if r == 4 else 1
            yield p + "attn.compressor.wkv.weight", (coff * Dh, D), "bf16", ("fanin", 1.0)
            yield p + "attn.compressor.wgate.weight", (coff * Dh, D), "bf16", ("fanin", 1.0)
            yield p + "attn.compressor.ape", (r, coff * Dh), "f32", ("normal", 1.0)
            yield p + "attn.compressor.norm.weight", (Dh,), "norm", ("norm",)
        if r == 4:
            yield p + "attn.indexer.wq_b.weight", (nI * dI, qr), "gemm", ("fanin", 1.0)
            yield p + "attn.indexer.weights_proj.weight", (nI, D), "bf16", ("fanin", 1.0)
            yield p + "attn.indexer.compressor.wkv.weight", (2 * dI, D), "bf16", ("fanin", 1.0)
            yield p + "attn.indexer.compressor.wgate.weight", (2 * dI, D), "bf16", ("fanin", 1.0)
            yield p + "attn.indexer.compressor.ape", (4, 2 * dI), "f32", ("normal", 1.0)
            yield p + "attn.indexer.compressor.norm.weight", (dI,), "norm", ("norm",)
        yield p + "ffn.gate.weight", (E, D), "bf16", ("fanin", 1.0)
        if hashed:
            yield p + "ffn.gate.tid2eid", (V, k), "tid2eid", ("tid2eid",)
        else:
            yield p + "ffn.gate.bias", (E,), "f32", ("normal", 1.0)
        boost = a.get("clamp_boost", 1.0)
        for e in range(E):
            b = boost if (e % 2 == 0 and not hashed) else 1.0
            yield p + f"ffn.experts.{e}.w1.weight", (I, D), "expert", ("fanin", b)
            yield p + f"ffn.experts.{e}.w2.weight", (D, I), "expert", ("fanin", 1.0)
            yield p + f"ffn.experts.{e}.w3.weight", (I, D), "expert", ("fanin", b)
        sb = boost if (li == a["n_layers"] - 1 and not is_mtp) else 1.0
        yield p + "ffn.shared_experts.w1.weight", (Is, D), "gemm", ("fanin", sb)
        yield p + "ffn.shared_experts.w2.weight", (D, Is), "gemm", ("fanin", 1.0)
        yield p + "ffn.shared_experts.w3.weight", (Is, D), "gemm", ("fanin", sb)
        if is_mtp:
            yield p + "norm.weight", (D,), "norm", ("norm",)
            yield p + "hc_head_fn", (hc, hc * D), "f32", ("fanin", 1.0)
            yield p + "hc_head_base", (hc,), "f32", ("normal", 1.0)
            yield p + "hc_head_scale", (1,), "f32", ("scale",)

    for li in range(a["n_layers"]):
        yield from block(f"layers.{li}.", li, False)
    for m in range(a["n_mtp_layers"]):
        yield from block(f"mtp.{m}.", a["n_layers"] + m, True)
    yield "norm.weight", (D,), "norm", ("norm",)
    yield "head.weight", (V, D), "bf16", ("fanin", 2.0)
    yield "hc_head_fn", (hc, hc * D), "f32", ("fanin", 1.0)
    yield "hc_head_base", (hc,), "f32", ("normal", 1.0)
    yield "hc_head_scale", (1,), "f32", ("scale",)


def _draw(seed: int, name: str, shape, init, a) -> np.ndarray:
    rng = _rng(seed, name)
    kind = init[0]
    if kind == "normal":
        return (rng.standard_normal(shape) * init[1]).astype(np.float32)
    if kind == "fanin":
        return (rng.standard_normal(shape) * (init[1] / np.sqrt(shape[-1]))).astype(np.float32)
    if kind == "norm":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "scale":
        return (1.0 + 0.5 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "tid2eid":
        V, k = shape
        E = a["n_routed_experts"]
        keys = rng.random((V, E))
        return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)
    raise ValueError(kind)


def _bf16(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def make_weights(a: dict) -> list[Tensor]:
    seed = a["seed"]
    quantized = a["dtype"] == "fp8"
    out: list[Tensor] = []
    for name, shape, kind, init in tensor_specs(a):
        # draw from a name that is independent of the vocab size so the real-vocab variant shares weights
        v = _draw(seed, name, shape, init, a)
        if kind == "tid2eid":
            out.append(Tensor(name, "i64", v, {name: torch.from_numpy(v.copy())}))
            continue
        if not quantized:
            out.append(Tensor(name, "f32", v, {name: torch.from_numpy(v.copy())}))
            continue
        if kind == "gemm":
            q, e = quant.fp8_block_quant(v)
            deq = quant.fp8_block_dequant(q, e)
            base = name[: -len(".weight")]
            st = {name: torch.from_numpy(q.copy()).view(torch.float8_e4m3fn),
                  base + ".scale": torch.from_numpy(e.copy()).view(torch.float8_e8m0fnu)}
            out.append(Tensor(name, "fp8", deq, st))
        elif kind == "expert" and a.get("expert_dtype") == "fp4":
            q, e = quant.fp4_quant(v)
            deq = quant.fp4_dequant(q, e)
            base = name[: -len(".weight")]
            st = {name: torch.from_numpy(q.copy()).view(torch.int8),
                  base + ".scale": torch.from_numpy(e.copy()).view(torch.float8_e8m0fnu)}
            out.append(Tensor(name, "fp4", deq, st))
        elif kind in ("bf16", "norm"):
            b = _bf16(v)
            out.append(Tensor(name, "bf16", b, {name: torch.from_numpy(b.copy()).to(torch.bfloat16)}))
        else:  # f32
            out.append(Tensor(name, "f32", v, {name: torch.from_numpy(v.copy())}))
    return out


def stored_dict(ts: list[Tensor]) -> dict:
    d = {}
    for t in ts:
        d.update(t.stored)
    return d


def values_dict(ts: list[Tensor]) -> dict:
    return {t.name: t.value for t in ts}
