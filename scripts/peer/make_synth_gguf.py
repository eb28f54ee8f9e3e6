#!/usr/bin/env python3
"""Write a random all-F32 DeepSeek-V4 GGUF with upstream llama.cpp naming and one of our tiny
configurations' shapes, to check that upstream llama.cpp accepts those hyperparameters.

Not a fixture: only a load/run probe for the peer (scripts/peer/README.md, "constraints").
Uses the vendored gguf-py of the peer tree (build/peer/src/.../gguf-py) and numpy.

  python scripts/peer/make_synth_gguf.py --config tiny --out build/peer/synth/tiny.gguf \
      [--head-dim 192] [--index-head-dim 128] [--no-mtp]
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GGUF_PY = sorted(glob.glob(os.path.join(ROOT, "build/peer/src/llama_cpp_python-*/vendor/llama.cpp/gguf-py")))
if GGUF_PY:
    sys.path.insert(0, GGUF_PY[-1])
import gguf  # noqa: E402


def load_configs():
    p = os.path.join(ROOT, "scripts/reference/dsv4ref/configs.py")
    spec = importlib.util.spec_from_file_location("dsv4ref_configs", p)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--rope-dim", type=int, default=None)
    ap.add_argument("--index-head-dim", type=int, default=None)
    ap.add_argument("--no-mtp", action="store_true")
    ap.add_argument("--gating-func", type=int, default=4)
    args = ap.parse_args()

    a = load_configs().get(args.config)
    if args.head_dim:
        a["head_dim"] = args.head_dim
    if args.rope_dim:
        a["rope_head_dim"] = args.rope_dim
    if args.index_head_dim:
        a["index_head_dim"] = args.index_head_dim
    rng = np.random.default_rng(args.seed)

    n_main = a["n_layers"]
    n_mtp = 0 if args.no_mtp else a["n_mtp_layers"]
    n_blk = n_main + n_mtp
    E, hd, rd, ihd = a["dim"], a["head_dim"], a["rope_head_dim"], a["index_head_dim"]
    H, qr, og, orank = a["n_heads"], a["q_lora_rank"], a["o_groups"], a["o_lora_rank"]
    nexp, nused, ff = a["n_routed_experts"], a["n_activated_experts"], a["moe_inter_dim"]
    ih, hc, V = a["index_n_heads"], a["hc_mult"], a["vocab_size"]
    mix = (2 + hc) * hc
    ratios = list(a["compress_ratios"])[:n_blk]

    arch = "deepseek4"
    w = gguf.GGUFWriter(args.out, arch)
    w.add_block_count(n_blk)
    w.add_context_length(a["max_position_embeddings"])
    w.add_embedding_length(E)
    w.add_uint32(f"{arch}.vocab_size", V)
    w.add_head_count(H)
    w.add_head_count_kv(1)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(rd)
    w.add_rope_freq_base(a["rope_theta"])
    w.add_string(f"{arch}.rope.scaling.type", "yarn")
    w.add_float32(f"{arch}.rope.scaling.factor", a["rope_factor"])
    w.add_uint32(f"{arch}.rope.scaling.original_context_length", a["original_seq_len"])
    w.add_float32(f"{arch}.rope.scaling.yarn_beta_fast", float(a["beta_fast"]))
    w.add_float32(f"{arch}.rope.scaling.yarn_beta_slow", float(a["beta_slow"]))
    w.add_layer_norm_rms_eps(a["norm_eps"])
    w.add_uint32(f"{arch}.attention.q_lora_rank", qr)
    w.add_uint32(f"{arch}.attention.sliding_window", a["window_size"])
    w.add_uint32(f"{arch}.attention.output_group_count", og)
    w.add_uint32(f"{arch}.attention.output_lora_rank", orank)
    w.add_array(f"{arch}.attention.compress_ratios", [int(r) for r in ratios])
    w.add_float32(f"{arch}.attention.compress_rope_freq_base", a["compress_rope_theta"])
    w.add_uint32(f"{arch}.attention.indexer.head_count", ih)
    w.add_uint32(f"{arch}.attention.indexer.key_length", ihd)
    w.add_uint32(f"{arch}.attention.indexer.top_k", a["index_topk"])
    w.add_uint32(f"{arch}.expert_count", nexp)
    w.add_uint32(f"{arch}.expert_used_count", nused)
    w.add_uint32(f"{arch}.expert_feed_forward_length", ff)
    w.add_uint32(f"{arch}.expert_shared_count", a["n_shared_experts"])
    w.add_float32(f"{arch}.expert_weights_scale", a["route_scale"])
    w.add_bool(f"{arch}.expert_weights_norm", True)
    w.add_uint32(f"{arch}.expert_gating_func", args.gating_func)
    w.add_array(f"{arch}.swiglu_clamp_exp", [float(a["swiglu_limit"])] * n_blk)
    w.add_array(f"{arch}.swiglu_clamp_shexp", [float(a["swiglu_limit"])] * n_blk)
    w.add_uint32(f"{arch}.hash_layer_count", a["n_hash_layers"])
    w.add_uint32(f"{arch}.hyper_connection.count", hc)
    w.add_uint32(f"{arch}.hyper_connection.sinkhorn_iterations", a["hc_sinkhorn_iters"])
    w.add_float32(f"{arch}.hyper_connection.epsilon", a["hc_eps"])
    if n_mtp:
        w.add_uint32(f"{arch}.nextn_predict_layers", n_mtp)
    w.add_tokenizer_model("none")

    def t(name, *ggml_shape, scale=None, kind="normal"):
        shape = tuple(reversed(ggml_shape))  # numpy order
        if kind == "ones":
            x = 1.0 + 0.1 * rng.standard_normal(shape)
        elif kind == "big":
            x = rng.standard_normal(shape)
        else:
            s = scale if scale is not None else 1.0 / np.sqrt(ggml_shape[0])
            x = s * rng.standard_normal(shape)
        w.add_tensor(name, x.astype(np.float32))

    t("token_embd.weight", E, V, scale=1.0)
    t("output_norm.weight", E, kind="ones")
    t("output.weight", E, V)
    t("output_hc_fn.weight", hc * E, hc)
    t("output_hc_base.weight", hc, kind="big")
    t("output_hc_scale.weight", 1, kind="big")
    for i in range(n_blk):
        p = f"blk.{i}."
        t(p + "attn_norm.weight", E, kind="ones")
        t(p + "attn_sinks.weight", H, kind="big")
        t(p + "attn_q_a.weight", E, qr)
        t(p + "attn_q_a_norm.weight", qr, kind="ones")
        t(p + "attn_q_b.weight", qr, H * hd)
        t(p + "attn_kv.weight", E, hd)
        t(p + "attn_kv_a_norm.weight", hd, kind="ones")
        t(p + "attn_output_a.weight", H * hd // og, og * orank)
        t(p + "attn_output_b.weight", og * orank, E)
        for s in ("attn", "ffn"):
            t(p + f"hc_{s}_fn.weight", hc * E, mix)
            t(p + f"hc_{s}_base.weight", mix, kind="big")
            t(p + f"hc_{s}_scale.weight", 3, kind="big")
        r = ratios[i]
        if r:
            coff = 2 if r == 4 else 1
            t(p + "attn_compressor_kv.weight", E, coff * hd)
            t(p + "attn_compressor_gate.weight", E, coff * hd)
            t(p + "attn_compressor_ape.weight", coff * hd, r, kind="big")
            t(p + "attn_compressor_norm.weight", hd, kind="ones")
            if r == 4:
                t(p + "indexer.proj.weight", E, ih)
                t(p + "indexer.attn_q_b.weight", qr, ih * ihd)
                t(p + "indexer_compressor_kv.weight", E, 2 * ihd)
                t(p + "indexer_compressor_gate.weight", E, 2 * ihd)
                t(p + "indexer_compressor_ape.weight", 2 * ihd, r, kind="big")
                t(p + "indexer_compressor_norm.weight", ihd, kind="ones")
        t(p + "ffn_gate_inp.weight", E, nexp)
        if i < a["n_hash_layers"]:
            tid = np.stack([rng.permutation(nexp)[:nused] for _ in range(V)]).astype(np.int32)  # [V, nused]
            w.add_tensor(p + "ffn_gate_tid2eid.weight", tid)
        else:
            t(p + "exp_probs_b.bias", nexp, scale=0.1)
        t(p + "ffn_norm.weight", E, kind="ones")
        t(p + "ffn_gate_exps.weight", E, ff, nexp)
        t(p + "ffn_up_exps.weight", E, ff, nexp)
        t(p + "ffn_down_exps.weight", ff, E, nexp)
        t(p + "ffn_gate_shexp.weight", E, ff)
        t(p + "ffn_up_shexp.weight", E, ff)
        t(p + "ffn_down_shexp.weight", ff, E)
        if i >= n_main:
            t(p + "nextn.eh_proj.weight", 2 * E, E)
            t(p + "nextn.enorm.weight", E, kind="ones")
            t(p + "nextn.hnorm.weight", E, kind="ones")
            t(p + "nextn.shared_head_norm.weight", E, kind="ones")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: config={args.config} head_dim={hd} rope={rd} index_head_dim={ihd} blocks={n_blk}")


if __name__ == "__main__":
    main()
