"""Tiny DeepSeek-V4 configurations (dsv4-architecture.md §2, §15).

Each config is described once in official `ModelArgs` terms (`args`) plus generation
parameters; `hf_config()` maps it to the HF `config.json` keys of the real checkpoint.
"""
from __future__ import annotations

import copy

BASE_SEED = 20260424

_COMMON = {
    "vocab_size": 512,
    "n_mtp_layers": 1,
    "rope_head_dim": 64,
    "head_dim": 192,
    "index_head_dim": 128,
    "n_shared_experts": 1,
    "score_func": "sqrtsoftplus",
    "rope_theta": 10000.0,
    "compress_rope_theta": 160000.0,
    "original_seq_len": 65536,
    "rope_factor": 16.0,
    "beta_fast": 32,
    "beta_slow": 1,
    "hc_mult": 4,
    "hc_sinkhorn_iters": 20,
    "hc_eps": 1e-6,
    "norm_eps": 1e-6,
    "max_position_embeddings": 1048576,
}

CONFIGS = {
    # Flash-like schedule: L0 SWA+hash, L1 CSA+hash, L2 HCA+score, L3 CSA+score, MTP SWA+score.
    "tiny": dict(_COMMON, **{
        "dim": 32, "n_layers": 4, "n_hash_layers": 2,
        "n_heads": 4, "q_lora_rank": 16, "o_groups": 2, "o_lora_rank": 16,
        "window_size": 16, "compress_ratios": [0, 4, 128, 4, 0],
        "index_n_heads": 4, "index_topk": 8,
        "n_routed_experts": 8, "n_activated_experts": 2, "moe_inter_dim": 32,
        "route_scale": 1.5, "swiglu_limit": 10.0,
        "dtype": "f32", "expert_dtype": None,
        # w1/w3 of even experts and the score-layer shared experts scaled x5 so the clamp fires on some entries
        "clamp_boost": 5.0,
        "seed": BASE_SEED + 1,
    }),
    # clamp forced active: the weights of `tiny` with swiglu_limit 0.5 (about half of all |up| entries clip).
    "tiny-clamp": dict(_COMMON, **{
        "dim": 32, "n_layers": 4, "n_hash_layers": 2,
        "n_heads": 4, "q_lora_rank": 16, "o_groups": 2, "o_lora_rank": 16,
        "window_size": 16, "compress_ratios": [0, 4, 128, 4, 0],
        "index_n_heads": 4, "index_topk": 8,
        "n_routed_experts": 8, "n_activated_experts": 2, "moe_inter_dim": 32,
        "route_scale": 1.5, "swiglu_limit": 0.5,
        "dtype": "f32", "expert_dtype": None,
        "clamp_boost": 5.0,
        "seed": BASE_SEED + 1,  # same weights as `tiny`: only swiglu_limit differs
    }),
    # official storage: FP8 e4m3 + 128x128 E8M0 dense GEMMs, FP4 e2m1 + per-32 E8M0 routed experts,
    # BF16 where the real checkpoint is BF16; every GEMM K a multiple of 128.
    "tiny-quant": dict(_COMMON, **{
        "dim": 128, "n_layers": 4, "n_hash_layers": 2,
        "n_heads": 2, "q_lora_rank": 128, "o_groups": 2, "o_lora_rank": 64,
        "window_size": 16, "compress_ratios": [0, 4, 128, 4, 0],
        "index_n_heads": 4, "index_topk": 8,
        "n_routed_experts": 4, "n_activated_experts": 2, "moe_inter_dim": 128,
        "route_scale": 1.5, "swiglu_limit": 10.0,
        "dtype": "fp8", "expert_dtype": "fp4",
        "clamp_boost": 5.0,
        "seed": BASE_SEED + 3,
    }),
    # Pro schedule (its first 4 layers): HCA bootstrap (layers 0,1), CSA, HCA; 3 hash layers (layer 2 = CSA + hash),
    # own top-k (2x tiny, as Pro 1024 vs Flash 512), own group count, route scale 2.5.
    "tiny-pro": dict(_COMMON, **{
        "dim": 32, "n_layers": 4, "n_hash_layers": 3,
        "n_heads": 4, "q_lora_rank": 16, "o_groups": 4, "o_lora_rank": 16,
        "window_size": 32, "compress_ratios": [128, 128, 4, 128, 0],
        "index_n_heads": 4, "index_topk": 16,
        "n_routed_experts": 8, "n_activated_experts": 3, "moe_inter_dim": 32,
        "route_scale": 2.5, "swiglu_limit": 10.0,
        "dtype": "f32", "expert_dtype": None,
        "clamp_boost": 5.0,
        "seed": BASE_SEED + 4,
    }),
}

REAL_VOCAB_SIZE = 129280


def get(name: str, vocab_size: int | None = None) -> dict:
    a = copy.deepcopy(CONFIGS[name])
    a["name"] = name
    if vocab_size is not None:
        a["vocab_size"] = vocab_size
    n = a["n_layers"] + a["n_mtp_layers"]
    assert len(a["compress_ratios"]) == n
    assert a["n_heads"] % a["o_groups"] == 0
    assert (a["head_dim"] - a["rope_head_dim"]) % 64 == 0
    return a


def hf_config(a: dict) -> dict:
    """HF `config.json` (keys as in the real DeepSeek-V4 checkpoint's root config.json)."""
    c = {
        "architectures": ["DeepseekV4ForCausalLM"],
        "model_type": "deepseek_v4",
        "vocab_size": a["vocab_size"],
        "hidden_size": a["dim"],
        "num_hidden_layers": a["n_layers"],
        "num_nextn_predict_layers": a["n_mtp_layers"],
        "num_attention_heads": a["n_heads"],
        "num_key_value_heads": 1,
        "head_dim": a["head_dim"],
        "qk_rope_head_dim": a["rope_head_dim"],
        "q_lora_rank": a["q_lora_rank"],
        "o_groups": a["o_groups"],
        "o_lora_rank": a["o_lora_rank"],
        "sliding_window": a["window_size"],
        "compress_ratios": list(a["compress_ratios"]),
        "rope_theta": a["rope_theta"],
        "compress_rope_theta": a["compress_rope_theta"],
        "rope_scaling": {
            "type": "yarn",
            "factor": a["rope_factor"],
            "original_max_position_embeddings": a["original_seq_len"],
            "beta_fast": a["beta_fast"],
            "beta_slow": a["beta_slow"],
        },
        "max_position_embeddings": a["max_position_embeddings"],
        "index_n_heads": a["index_n_heads"],
        "index_head_dim": a["index_head_dim"],
        "index_topk": a["index_topk"],
        "n_routed_experts": a["n_routed_experts"],
        "num_experts_per_tok": a["n_activated_experts"],
        "n_shared_experts": a["n_shared_experts"],
        "moe_intermediate_size": a["moe_inter_dim"],
        "routed_scaling_factor": a["route_scale"],
        "scoring_func": a["score_func"],
        "topk_method": "noaux_tc",
        "norm_topk_prob": True,
        "num_hash_layers": a["n_hash_layers"],
        "swiglu_limit": a["swiglu_limit"],
        "hc_mult": a["hc_mult"],
        "hc_sinkhorn_iters": a["hc_sinkhorn_iters"],
        "hc_eps": a["hc_eps"],
        "rms_norm_eps": a["norm_eps"],
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "attention_bias": False,
        "torch_dtype": "float32" if a["dtype"] == "f32" else "bfloat16",
    }
    if a["dtype"] == "fp8":
        c["quantization_config"] = {
            "quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0",
            "weight_block_size": [128, 128], "activation_scheme": "dynamic",
        }
    if a.get("expert_dtype"):
        c["expert_dtype"] = a["expert_dtype"]
    return c


def official_args(a: dict) -> dict:
    """OFF `inference/config.json` / ModelArgs-style keys (for the official-code helper)."""
    keys = ["vocab_size", "dim", "n_layers", "n_mtp_layers", "n_hash_layers", "n_heads", "head_dim",
            "rope_head_dim", "q_lora_rank", "o_groups", "o_lora_rank", "window_size", "compress_ratios",
            "index_n_heads", "index_head_dim", "index_topk", "n_routed_experts", "n_activated_experts",
            "n_shared_experts", "moe_inter_dim", "score_func", "route_scale", "swiglu_limit", "rope_theta",
            "compress_rope_theta", "original_seq_len", "rope_factor", "beta_fast", "beta_slow", "hc_mult",
            "hc_sinkhorn_iters", "hc_eps", "norm_eps"]
    o = {k: a[k] for k in keys}
    o["dtype"] = {"f32": "fp32", "fp8": "fp8"}.get(a["dtype"], a["dtype"])
    if a["dtype"] == "fp8":
        o["scale_fmt"] = "ue8m0"
    o["expert_dtype"] = a.get("expert_dtype")
    return o
