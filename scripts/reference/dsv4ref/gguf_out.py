"""Write a tiny checkpoint as GGUF with upstream llama.cpp `deepseek4` naming and keys
(gguf-and-llama-cpp.md §2.3, §2.4, §2.5), using PyPI `gguf` (which predates DEEPSEEK4, so every
architecture key is written by name).

dtypes: F32 configs -> every float tensor F32, tid2eid I32.  tiny-quant -> routed experts MXFP4
(lossless repack of FP4 + per-32 E8M0), FP8 dense tensors dequantised to BF16 (every e4m3 value
times a power-of-two scale is exactly representable in BF16, so the GGUF dequantises to exactly the
safetensors' values; F32 would double the file for nothing but would not round llama.cpp's CPU
activations to bf16), BF16 matrices BF16, 1-D tensors F32.  MTP (`mtp.*`) is not written, as the upstream converter's
default output (conversion "v0") does not write it.
"""
from __future__ import annotations

import numpy as np

from . import quant, vocab as toyvocab

ARCH = "deepseek4"


def _gguf_name(name: str) -> str | None:
    if name.startswith("mtp."):
        return None
    g = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight", "head.weight": "output.weight",
         "hc_head_fn": "output_hc_fn.weight", "hc_head_base": "output_hc_base.weight",
         "hc_head_scale": "output_hc_scale.weight"}
    if name in g:
        return g[name]
    parts = name.split(".")
    li = parts[1]
    rest = ".".join(parts[2:])
    m = {
        "attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
        "attn.attn_sink": "attn_sinks.weight",
        "attn.wq_a.weight": "attn_q_a.weight", "attn.q_norm.weight": "attn_q_a_norm.weight",
        "attn.wq_b.weight": "attn_q_b.weight", "attn.wkv.weight": "attn_kv.weight",
        "attn.kv_norm.weight": "attn_kv_a_norm.weight",
        "attn.wo_a.weight": "attn_output_a.weight", "attn.wo_b.weight": "attn_output_b.weight",
        "hc_attn_fn": "hc_attn_fn.weight", "hc_ffn_fn": "hc_ffn_fn.weight",
        "hc_attn_base": "hc_attn_base.weight", "hc_ffn_base": "hc_ffn_base.weight",
        "hc_attn_scale": "hc_attn_scale.weight", "hc_ffn_scale": "hc_ffn_scale.weight",
        "attn.compressor.wkv.weight": "attn_compressor_kv.weight",
        "attn.compressor.wgate.weight": "attn_compressor_gate.weight",
        "attn.compressor.ape": "attn_compressor_ape.weight",
        "attn.compressor.norm.weight": "attn_compressor_norm.weight",
        "attn.indexer.weights_proj.weight": "indexer.proj.weight",
        "attn.indexer.wq_b.weight": "indexer.attn_q_b.weight",
        "attn.indexer.compressor.wkv.weight": "indexer_compressor_kv.weight",
        "attn.indexer.compressor.wgate.weight": "indexer_compressor_gate.weight",
        "attn.indexer.compressor.ape": "indexer_compressor_ape.weight",
        "attn.indexer.compressor.norm.weight": "indexer_compressor_norm.weight",
        "ffn.gate.weight": "ffn_gate_inp.weight",
        "ffn.gate.tid2eid": "ffn_gate_tid2eid.weight",
        "ffn.gate.bias": "exp_probs_b.bias",
        "ffn.shared_experts.w1.weight": "ffn_gate_shexp.weight",
        "ffn.shared_experts.w3.weight": "ffn_up_shexp.weight",
        "ffn.shared_experts.w2.weight": "ffn_down_shexp.weight",
    }
    if rest.startswith("ffn.experts."):
        return None  # stacked separately
    return f"blk.{li}.{m[rest]}"


TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4


def write_gguf(path, a: dict, ts: list, tokens=None, special=None, merges=None) -> list:
    """Write GGUF; returns the tensor table [(name, ggml_type, ggml_shape)]."""
    import gguf

    quantized = a["dtype"] == "fp8"
    w = gguf.GGUFWriter(str(path), ARCH)
    L = a["n_layers"]
    K = ARCH
    w.add_name(f"dsv4 synthetic {a['name']}")
    w.add_uint32("general.file_type", int(gguf.LlamaFileType.MOSTLY_MXFP4_MOE if quantized else gguf.LlamaFileType.ALL_F32))
    w.add_uint32(f"{K}.block_count", L)
    w.add_uint32(f"{K}.context_length", a["max_position_embeddings"])
    w.add_uint32(f"{K}.embedding_length", a["dim"])
    w.add_uint32(f"{K}.embedding_length_out", a["dim"] * a["hc_mult"])
    w.add_uint32(f"{K}.vocab_size", a["vocab_size"])
    w.add_uint32(f"{K}.feed_forward_length", a["moe_inter_dim"])
    w.add_uint32(f"{K}.attention.head_count", a["n_heads"])
    w.add_uint32(f"{K}.attention.head_count_kv", 1)
    w.add_uint32(f"{K}.attention.key_length", a["head_dim"])
    w.add_uint32(f"{K}.attention.value_length", a["head_dim"])
    w.add_uint32(f"{K}.rope.dimension_count", a["rope_head_dim"])
    w.add_float32(f"{K}.rope.freq_base", float(a["rope_theta"]))
    w.add_string(f"{K}.rope.scaling.type", "yarn")
    w.add_float32(f"{K}.rope.scaling.factor", float(a["rope_factor"]))
    w.add_uint32(f"{K}.rope.scaling.original_context_length", a["original_seq_len"])
    w.add_float32(f"{K}.rope.scaling.yarn_beta_fast", float(a["beta_fast"]))
    w.add_float32(f"{K}.rope.scaling.yarn_beta_slow", float(a["beta_slow"]))
    w.add_float32(f"{K}.attention.layer_norm_rms_epsilon", float(a["norm_eps"]))
    w.add_uint32(f"{K}.attention.q_lora_rank", a["q_lora_rank"])
    w.add_uint32(f"{K}.attention.sliding_window", a["window_size"])
    w.add_uint32(f"{K}.attention.output_group_count", a["o_groups"])
    w.add_uint32(f"{K}.attention.output_lora_rank", a["o_lora_rank"])
    w.add_array(f"{K}.attention.compress_ratios", [int(x) for x in a["compress_ratios"]])
    w.add_float32(f"{K}.attention.compress_rope_freq_base", float(a["compress_rope_theta"]))
    w.add_uint32(f"{K}.attention.indexer.head_count", a["index_n_heads"])
    w.add_uint32(f"{K}.attention.indexer.key_length", a["index_head_dim"])
    w.add_uint32(f"{K}.attention.indexer.top_k", a["index_topk"])
    w.add_uint32(f"{K}.expert_count", a["n_routed_experts"])
    w.add_uint32(f"{K}.expert_used_count", a["n_activated_experts"])
    w.add_uint32(f"{K}.expert_feed_forward_length", a["moe_inter_dim"])
    w.add_uint32(f"{K}.expert_shared_count", a["n_shared_experts"])
    w.add_float32(f"{K}.expert_weights_scale", float(a["route_scale"]))
    w.add_bool(f"{K}.expert_weights_norm", True)
    w.add_uint32(f"{K}.expert_gating_func", 4)
    w.add_array(f"{K}.swiglu_clamp_exp", [float(a["swiglu_limit"])] * L)
    w.add_array(f"{K}.swiglu_clamp_shexp", [float(a["swiglu_limit"])] * L)
    w.add_uint32(f"{K}.hash_layer_count", a["n_hash_layers"])
    w.add_uint32(f"{K}.hyper_connection.count", a["hc_mult"])
    w.add_uint32(f"{K}.hyper_connection.sinkhorn_iterations", a["hc_sinkhorn_iters"])
    w.add_float32(f"{K}.hyper_connection.epsilon", float(a["hc_eps"]))

    if tokens is None:
        tokens, special, merges = toyvocab.build()
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "deepseek-v3")
    w.add_array("tokenizer.ggml.tokens", tokens)
    ttype = [TOKEN_NORMAL if s is None else (TOKEN_CONTROL if s else TOKEN_USER_DEFINED) for s in special]
    w.add_array("tokenizer.ggml.token_type", ttype)
    w.add_array("tokenizer.ggml.merges", merges)
    w.add_uint32("tokenizer.ggml.bos_token_id", 0)
    w.add_uint32("tokenizer.ggml.eos_token_id", 1)
    w.add_uint32("tokenizer.ggml.padding_token_id", 1)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_bool("tokenizer.ggml.add_eos_token", False)

    by = {t.name: t for t in ts}
    table = []

    def add(name, arr, raw_dtype=None, raw_shape=None):
        w.add_tensor(name, arr, raw_shape=raw_shape, raw_dtype=raw_dtype)
        if raw_dtype is None:
            gt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}.get(arr.dtype, str(arr.dtype))
            shp = list(arr.shape)
        else:
            gt = raw_dtype.name
            shp = list(raw_shape) if raw_shape else list(gguf.quant_shape_from_byte_shape(arr.shape, raw_dtype))
        table.append((name, gt, shp[::-1]))

    for t in ts:
        gname = _gguf_name(t.name)
        if gname is None:
            continue
        if t.kind == "i64":
            add(gname, t.value.astype(np.int32))
        elif (t.kind == "bf16" or t.kind == "fp8") and t.value.ndim >= 2:
            # FP8 e4m3 x 2^k values are exactly representable in BF16, so this is lossless
            bits = (t.value.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # exact: values are bf16
            add(gname, bits.view(np.uint8).reshape(*t.value.shape[:-1], t.value.shape[-1] * 2),
                raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            add(gname, np.ascontiguousarray(t.value.astype(np.float32)))
        if gname.endswith("ffn_gate_inp.weight"):
            # stacked experts right after the router, in upstream order gate/up/down
            li = int(t.name.split(".")[1])
            p = f"layers.{li}.ffn.experts."
            E = a["n_routed_experts"]
            for wn, gn in (("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps")):
                recs = [by[f"{p}{e}.{wn}.weight"] for e in range(E)]
                if recs[0].kind == "fp4":
                    blocks = []
                    for r in recs:
                        st = r.stored
                        q = st[r.name].view(dtype=__import__("torch").uint8).numpy()
                        e8 = st[r.name[:-len(".weight")] + ".scale"].view(dtype=__import__("torch").uint8).numpy()
                        mx = quant.fp4_to_mxfp4_blocks(q, e8)
                        blocks.append(mx.reshape(mx.shape[0], -1))
                    arr = np.ascontiguousarray(np.stack(blocks))
                    add(f"blk.{li}.{gn}.weight", arr, raw_dtype=gguf.GGMLQuantizationType.MXFP4)
                else:
                    add(f"blk.{li}.{gn}.weight", np.ascontiguousarray(np.stack([r.value for r in recs]).astype(np.float32)))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return table
