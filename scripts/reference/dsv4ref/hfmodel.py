"""Build transformers' DeepseekV4ForCausalLM (float32, eager) from official-name weights."""
from __future__ import annotations

import numpy as np
import torch

from . import configs


def official_to_hf(values: dict, a: dict) -> dict:
    """Map official tensor names (effective f32 values) to the HF state dict. mtp.* is dropped (HF has no MTP)."""
    sd = {}
    E = a["n_routed_experts"]

    def t(x):
        x = np.asarray(x)
        return torch.from_numpy(x.copy()) if x.dtype == np.int64 else torch.from_numpy(x.astype(np.float32))

    sd["model.embed_tokens.weight"] = t(values["embed.weight"])
    sd["lm_head.weight"] = t(values["head.weight"])
    sd["model.norm.weight"] = t(values["norm.weight"])
    sd["model.hc_head.hc_fn"] = t(values["hc_head_fn"])
    sd["model.hc_head.hc_base"] = t(values["hc_head_base"])
    sd["model.hc_head.hc_scale"] = t(values["hc_head_scale"])
    ren = {
        "attn_norm.weight": "input_layernorm.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "hc_attn_fn": "attn_hc.fn", "hc_attn_base": "attn_hc.base", "hc_attn_scale": "attn_hc.scale",
        "hc_ffn_fn": "ffn_hc.fn", "hc_ffn_base": "ffn_hc.base", "hc_ffn_scale": "ffn_hc.scale",
        "attn.attn_sink": "self_attn.sinks",
        "attn.wq_a.weight": "self_attn.q_a_proj.weight",
        "attn.q_norm.weight": "self_attn.q_a_norm.weight",
        "attn.wq_b.weight": "self_attn.q_b_proj.weight",
        "attn.wkv.weight": "self_attn.kv_proj.weight",
        "attn.kv_norm.weight": "self_attn.kv_norm.weight",
        "attn.wo_a.weight": "self_attn.o_a_proj.weight",
        "attn.wo_b.weight": "self_attn.o_b_proj.weight",
        "attn.compressor.wkv.weight": "self_attn.compressor.kv_proj.weight",
        "attn.compressor.wgate.weight": "self_attn.compressor.gate_proj.weight",
        "attn.compressor.ape": "self_attn.compressor.position_bias",
        "attn.compressor.norm.weight": "self_attn.compressor.kv_norm.weight",
        "attn.indexer.wq_b.weight": "self_attn.compressor.indexer.q_b_proj.weight",
        "attn.indexer.weights_proj.weight": "self_attn.compressor.indexer.scorer.weights_proj.weight",
        "attn.indexer.compressor.wkv.weight": "self_attn.compressor.indexer.kv_proj.weight",
        "attn.indexer.compressor.wgate.weight": "self_attn.compressor.indexer.gate_proj.weight",
        "attn.indexer.compressor.ape": "self_attn.compressor.indexer.position_bias",
        "attn.indexer.compressor.norm.weight": "self_attn.compressor.indexer.kv_norm.weight",
        "ffn.gate.weight": "mlp.gate.weight",
        "ffn.gate.bias": "mlp.gate.e_score_correction_bias",
        "ffn.gate.tid2eid": "mlp.gate.tid2eid",
        "ffn.shared_experts.w1.weight": "mlp.shared_experts.gate_proj.weight",
        "ffn.shared_experts.w3.weight": "mlp.shared_experts.up_proj.weight",
        "ffn.shared_experts.w2.weight": "mlp.shared_experts.down_proj.weight",
    }
    for li in range(a["n_layers"]):
        p = f"layers.{li}."
        for k, v in values.items():
            if k.startswith(p) and ".experts." not in k:
                sd[f"model.layers.{li}." + ren[k[len(p):]]] = t(v)
        w1 = np.stack([values[p + f"ffn.experts.{e}.w1.weight"] for e in range(E)])
        w3 = np.stack([values[p + f"ffn.experts.{e}.w3.weight"] for e in range(E)])
        w2 = np.stack([values[p + f"ffn.experts.{e}.w2.weight"] for e in range(E)])
        sd[f"model.layers.{li}.mlp.experts.gate_up_proj"] = t(np.concatenate([w1, w3], axis=1))
        sd[f"model.layers.{li}.mlp.experts.down_proj"] = t(w2)
    return sd


def hf_config_object(a: dict):
    from transformers import DeepseekV4Config
    d = configs.hf_config(a)
    d.pop("quantization_config", None)
    d.pop("expert_dtype", None)
    d.pop("architectures", None)
    d.pop("model_type", None)
    d.pop("torch_dtype", None)
    d.pop("topk_method", None)
    cfg = DeepseekV4Config(**d)
    cfg._attn_implementation = "eager"
    try:
        cfg._experts_implementation = "eager"
    except Exception:
        pass
    return cfg


def build_model(a: dict, values: dict):
    from transformers import DeepseekV4ForCausalLM
    cfg = hf_config_object(a)
    torch.manual_seed(0)
    model = DeepseekV4ForCausalLM(cfg).to(torch.float32).eval()
    sd = official_to_hf(values, a)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # rotary inv_freq buffers are non-persistent; nothing else may be missing
    missing = [m for m in missing if "inv_freq" not in m]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, n
    return model, cfg
