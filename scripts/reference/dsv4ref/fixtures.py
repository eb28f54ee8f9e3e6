"""Generate the committed reference fixtures under tests/fixtures/<config>/.

    python -m dsv4ref.fixtures --out ../../tests/fixtures [--configs tiny,tiny-quant] [--stage all|model]

Stage `model` writes only config.json, inference_config.json, model.safetensors, model.gguf,
tokenizer files and token sequences; stage `all` adds the reference outputs and manifest.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import platform
import sys

import numpy as np
import torch

from . import checkpoint, configs, gguf_out, hfmodel, sim, vocab, weights

SEQ_SEED = 7
T_MAIN, P_MAIN = 300, 200          # main sequence: full prefill, and prefill 200 + decode 100
T_SHORT, P_SHORT = 33, 3           # prefill 3 (< ratio 4) + decode 30
T_LONG, P_LONG, STRIDE_LONG = 8192, 7680, 32
INTERMEDIATE_POS = T_MAIN - 1
N_GREEDY = 32

PROMPTS = [
    "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is the capital of France?<｜Assistant｜></think>",
    "<｜begin▁of▁sentence｜><｜User｜>Write a haiku about the sea.<｜Assistant｜><think>",
    "<｜begin▁of▁sentence｜>def forward(self, x):\n    return",
]

SIM_MODES = {
    "simoff": dict(kv_fp8=False, indexer_fp4=False, act_fp8=False),
    "simon": dict(kv_fp8=True, indexer_fp4=True, act_fp8=False),
    "simact": dict(kv_fp8=True, indexer_fp4=True, act_fp8=True),
}


INTERMEDIATE_DESC = {
    "embed": "embedding row [D] (the 4 HC streams start as 4 copies)",
    "attn_norm": "attention input after HC-pre collapse and attn_norm [D]",
    "qr": "q_norm(wq_a a) [q_lora_rank] (also the indexer's query input)",
    "q_normed": "wq_b qr after the per-head unweighted RMSNorm, BEFORE RoPE [H, head_dim]",
    "kv": "kv_norm(wkv a) after the sim's FP8 round-trip of the nope part, BEFORE RoPE [head_dim]",
    "attn_out": "attention sublayer output wo_b(wo_a(...)) [D]",
    "hc_after_attn": "the 4 HC streams after the attention sublayer's HC-post [4, D]",
    "ffn_norm": "MoE input after HC-pre collapse and ffn_norm [D]",
    "moe_out": "MoE output: routed + shared experts [D]",
    "l_out": "the 4 HC streams after the layer [4, D]",
    "hc_head_out": "HC head collapse of the last layer's streams [D]",
    "final_norm": "final RMSNorm output [D] (logits = head . final_norm)",
}


def modes_for(a):
    return ["simon", "simoff"] + (["simact"] if a["dtype"] == "fp8" else [])


def set_determinism():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def token_sequences(a):
    rng = np.random.Generator(np.random.PCG64(SEQ_SEED))
    main = np.concatenate([[0], rng.integers(3, a["vocab_size"], T_MAIN - 1)]).astype(np.int32)
    short = np.concatenate([[0], rng.integers(3, a["vocab_size"], T_SHORT - 1)]).astype(np.int32)
    rng2 = np.random.Generator(np.random.PCG64(SEQ_SEED + 1))
    long = np.concatenate([[0], rng2.integers(3, a["vocab_size"], T_LONG - 1)]).astype(np.int32)
    return {"main": main, "short": short, "long": long}


class Out:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.files = {}

    def npy(self, rel, arr, desc):
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = np.ascontiguousarray(arr)
        np.save(p, arr, allow_pickle=False)
        self.files[rel] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "desc": desc}

    def note(self, rel, desc, **kw):
        d = {"desc": desc}
        d.update(kw)
        self.files[rel] = d


class NullOut:
    """Discards outputs: for runs made only for their statistics (fixture size budget)."""

    files = {}

    def npy(self, rel, arr, desc):
        pass

    def note(self, rel, desc, **kw):
        pass


# Fixture size budget (tests/fixtures ≤ 30 MB): these outputs are computed (their statistics go into
# the manifest and README: sim on vs off, decode vs prefill) but not written. "all": no files of the
# mode; "decode": no decode_*.npy. tiny-clamp shares tiny's attention weights (its point is the
# clamp, checked without simulation); tiny-pro's simulated path is the same code as tiny's; simact is
# not stable between prefill and decode (a rounding flip at an FP8 midpoint, see the README).
NOT_WRITTEN = {("tiny-clamp", "simon"): "all", ("tiny-pro", "simon"): "all",
               ("tiny-clamp", "simoff"): "decode", ("tiny-quant", "simact"): "decode"}


def written(a, mode, what):
    skip = NOT_WRITTEN.get((a["name"], mode))
    return not (skip == "all" or skip == what)


# ----------------------------------------------------------------------------- model running
@torch.no_grad()
def run_prefill(model, ids):
    out = model(input_ids=torch.as_tensor(ids, dtype=torch.long)[None], use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def run_decode(model, ids, n_prefill, keep=None):
    """Prefill ids[:n_prefill] with a cache, then feed one token per call. Returns logits for positions
    n_prefill-1 .. len-1 (rows), optionally only positions in `keep`."""
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)
    ids_t = torch.as_tensor(ids, dtype=torch.long)[None]
    out = model(input_ids=ids_t[:, :n_prefill], cache=cache, use_cache=True)
    rows, pos = [out.logits[0, -1].float()], [n_prefill - 1]
    cache = out.cache
    for t in range(n_prefill, ids_t.shape[1]):
        out = model(input_ids=ids_t[:, t:t + 1], cache=cache, use_cache=True)
        cache = out.cache
        if keep is None or t in keep:
            rows.append(out.logits[0, -1].float())
            pos.append(t)
    if keep is not None:
        sel = [i for i, p in enumerate(pos) if p in keep]
        rows, pos = [rows[i] for i in sel], [pos[i] for i in sel]
    return torch.stack(rows), np.array(pos, dtype=np.int32)


@torch.no_grad()
def greedy(model, ids, n):
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)
    out = model(input_ids=torch.as_tensor(ids, dtype=torch.long)[None], cache=cache, use_cache=True)
    gen = []
    for _ in range(n):
        nxt = int(torch.argmax(out.logits[0, -1]))
        gen.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]]), cache=out.cache, use_cache=True)
    return np.array(gen, dtype=np.int32)


def rope_rows(model, rows, positions, rope_type):
    from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
    x = rows[None]  # [1, S, D]
    pos = torch.as_tensor(positions, dtype=torch.long)[None]
    cos, sin = model.model.rotary_emb(x, position_ids=pos, layer_type=rope_type)
    return M.apply_rotary_pos_emb(x.unsqueeze(1), cos, sin).squeeze(1)[0]


def nmse(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a - b) ** 2).sum() / max((b ** 2).sum(), 1e-300))


def top1(a, b):
    return float((np.argmax(a, -1) == np.argmax(b, -1)).mean())


# ----------------------------------------------------------------------------- per config
def write_model_files(a, d: pathlib.Path, out: Out, seqs):
    ts = weights.make_weights(a)
    checkpoint.write_checkpoint(a["name"], d, seed=a["seed"])
    if a["name"] == "tiny-clamp" and (d.parent / "tiny" / "model.safetensors").exists():
        # identical weights to `tiny` (same seed): keep one copy, link the other (fixture size budget)
        mine, theirs = d / "model.safetensors", d.parent / "tiny" / "model.safetensors"
        assert mine.read_bytes() == theirs.read_bytes(), "tiny-clamp weights must equal tiny's"
        mine.unlink()
        mine.symlink_to("../tiny/model.safetensors")
    out.note("config.json", "HF-format config.json (keys of the real DeepSeek-V4 root config.json)")
    out.note("inference_config.json", "the same model in official ModelArgs keys (inference/config.json style)")
    out.note("model.safetensors", "official tensor names and dtypes (dsv4-architecture.md §3.2), incl. mtp.0.*"
             + (" (symlink to ../tiny/model.safetensors: identical weights)" if a["name"] == "tiny-clamp" else ""))
    out.note("tokenizer.json", "toy 512-entry byte-level BPE vocabulary with the DeepSeek-V4 added tokens (HF tokenizers)")
    out.note("tokenizer_config.json", "tokenizer_config.json for the toy vocabulary (add_bos_token false)")
    table = gguf_out.write_gguf(d / "model.gguf", a, ts)
    out.note("model.gguf", "the same model as GGUF, upstream llama.cpp deepseek4 names/keys, no MTP tensors",
             tensors=[{"name": n, "type": t, "ne": s} for n, t, s in table])
    out.npy("tokens/main.npy", seqs["main"], f"main sequence, {T_MAIN} tokens (BOS + seeded uniform ids in [3, vocab))")
    out.npy("tokens/short.npy", seqs["short"], f"short sequence, {T_SHORT} tokens")
    if a["name"] == "tiny":
        out.npy("tokens/long.npy", seqs["long"], f"long sequence, {T_LONG} tokens")
    tok = vocab.load_tokenizer(d / "tokenizer.json")
    for i, p in enumerate(PROMPTS):
        ids = np.array(tok.encode(p, add_special_tokens=False).ids, dtype=np.int32)
        out.npy(f"tokens/prompt{i}.npy", ids, f"greedy prompt {i} tokenized with tokenizer.json: {p!r}")
    return ts


def reference_outputs(a, d: pathlib.Path, out: Out, ts, seqs, log):
    values = weights.values_dict(ts)
    model, cfg = hfmodel.build_model(a, values)
    stats = {}
    logits_main = {}
    all_out = out
    for mode in modes_for(a):
        out = all_out if written(a, mode, "all") else NullOut()
        dout = out if written(a, mode, "decode") else NullOut()
        hs = sim.install(model, **SIM_MODES[mode])
        hs += sim.install_tiebreak(model)
        full_dumps = mode == "simon" and a["name"] != "tiny-clamp"  # tiny-clamp = tiny's attention weights
        rec = sim.Recorder(model, intermediates=full_dumps, indexer=True, kv=full_dumps)
        log(f"  {a['name']} {mode}: prefill main")
        lg = run_prefill(model, seqs["main"]).numpy()
        logits_main[mode] = lg
        out.npy(f"{mode}/prefill_main.npy", lg, f"[{mode}] logits at every position, one full prefill of tokens/main")
        dump_recorded(a, model, rec, out, mode, seqs)
        rec.remove()
        # indexer selections during decode, for comparison with the prefill ones
        rec = sim.Recorder(model, intermediates=False, indexer=True, kv=False)
        log(f"  {a['name']} {mode}: prefill {P_MAIN} + decode")
        dl, dpos = run_decode(model, seqs["main"], P_MAIN)
        dout.npy(f"{mode}/decode_main.npy", dl.numpy(),
                f"[{mode}] logits for positions {P_MAIN - 1}..{T_MAIN - 1}: prefill {P_MAIN} tokens (row 0 = its last "
                f"position) then one token per call")
        dec_sel = decode_selections(rec)
        rec.remove()
        st = {"decode_vs_prefill_max_abs": float(np.abs(dl.numpy() - lg[P_MAIN - 1:]).max()),
              "decode_vs_prefill_nmse": nmse(dl.numpy(), lg[P_MAIN - 1:])}
        for li, sel in dec_sel.items():
            if not (d / f"{mode}/indexer_topk.L{li}.npy").exists():
                continue
            pre = np.load(d / f"{mode}/indexer_topk.L{li}.npy")[P_MAIN:]
            st[f"L{li}_decode_selection_mismatch_positions"] = int(sum(
                set(x[x >= 0].tolist()) != set(y[y >= 0].tolist()) for x, y in zip(sel, pre)))
        log(f"  {a['name']} {mode}: short")
        sl, _ = run_decode(model, seqs["short"], P_SHORT)
        dout.npy(f"{mode}/decode_short.npy", sl.numpy(),
                f"[{mode}] logits for positions {P_SHORT - 1}..{T_SHORT - 1}: prefill {P_SHORT} then one token per call")
        for i in range(len(PROMPTS)):
            ids = np.load(d / f"tokens/prompt{i}.npy")
            out.npy(f"{mode}/greedy{i}.npy", greedy(model, ids, N_GREEDY),
                    f"[{mode}] {N_GREEDY} greedy (argmax) tokens continuing tokens/prompt{i}")
        if a["name"] == "tiny" and mode in ("simon", "simoff"):  # every 32nd position (size budget)
            keep = set(range(STRIDE_LONG - 1, T_LONG, STRIDE_LONG))
            log(f"  {a['name']} {mode}: long prefill {T_LONG}")
            ll = run_prefill(model, seqs["long"]).numpy()
            kp = np.array(sorted(keep), dtype=np.int32)
            out.npy(f"{mode}/prefill_long.npy", ll[kp],
                    f"[{mode}] logits of one full prefill of tokens/long at positions long_positions.npy (p % {STRIDE_LONG} == {STRIDE_LONG - 1})")
            out.npy("tokens/long_positions.npy", kp, "positions of the rows of */prefill_long.npy")
            log(f"  {a['name']} {mode}: long decode")
            dl2, dp2 = run_decode(model, seqs["long"], P_LONG, keep=keep)
            out.npy(f"{mode}/decode_long.npy", dl2.numpy(),
                    f"[{mode}] logits at positions long_decode_positions.npy: prefill {P_LONG} then one token per call")
            out.npy("tokens/long_decode_positions.npy", dp2, "positions of the rows of */decode_long.npy")
            st["long_decode_vs_prefill_max_abs"] = float(np.abs(dl2.numpy() - ll[dp2]).max())
            st["long_decode_vs_prefill_nmse"] = nmse(dl2.numpy(), ll[dp2])
        hs.remove()
        stats[mode] = st
    out = all_out
    cmp = {}
    for mode in logits_main:
        if mode == "simoff":
            continue
        cmp[f"{mode}_vs_simoff"] = {"nmse": nmse(logits_main[mode], logits_main["simoff"]),
                                   "top1_agreement": top1(logits_main[mode], logits_main["simoff"])}
    if "simact" in logits_main:
        cmp["simact_vs_simon"] = {"nmse": nmse(logits_main["simact"], logits_main["simon"]),
                                  "top1_agreement": top1(logits_main["simact"], logits_main["simon"])}
    stats["sim_comparison_prefill_main"] = cmp
    stats["clamp"] = clamp_stats(model, a, seqs)
    return stats


def decode_selections(rec):
    res = {}
    for k, v in rec.data.items():
        if k.endswith(".indexer_topk"):
            li = int(k.split(".")[0][1:])
            rows = [x[0, -1].numpy() for x in v[1:]]  # skip the prefill call
            res[li] = rows
    return res


def dump_recorded(a, model, rec, out: Out, mode, seqs):
    T = T_MAIN
    pos = np.arange(T)
    nope = a["head_dim"] - a["rope_head_dim"]
    for li, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        rt = attn.rope_layer_type
        r = a["compress_ratios"][li]
        first_csa = a["compress_ratios"].index(4)
        if mode == "simon" and r == 4 and (li == first_csa or a["name"] == "tiny") and f"L{li}.kv_norm_out" in rec.data:
            raw = rec.data[f"L{li}.kv_norm_out"][0][0]
            out.npy(f"{mode}/kv_raw.L{li}.npy", rope_rows(model, raw, pos, rt).numpy(),
                    f"[{mode}] layer {li} raw KV rows for positions 0..{T - 1} as stored: kv_norm(wkv a), RoPE on the "
                    f"last {a['rope_head_dim']} channels, first {nope} channels FP8-rounded per 64")
        if mode == "simon" and r and f"L{li}.comp_norm_out" in rec.data:
            comp = rec.data[f"L{li}.comp_norm_out"][0][0]
            out.npy(f"{mode}/kv_comp.L{li}.npy", rope_rows(model, comp, np.arange(comp.shape[0]) * r, rt).numpy(),
                    f"[{mode}] layer {li} (ratio {r}) compressed KV rows j = 0..{comp.shape[0] - 1} (RoPE at j*{r}, "
                    f"nope FP8-rounded)")
        if f"L{li}.indexer_topk" in rec.data:
            sel = rec.data[f"L{li}.indexer_topk"][0][0].numpy().astype(np.int32)
            out.npy(f"{mode}/indexer_topk.L{li}.npy", sel,
                    f"[{mode}] layer {li} indexer selection per position, by descending score, ties to the lower "
                    f"row index (-1 = no row); "
                    f"from the full prefill of tokens/main")
            if mode != "simon":
                continue
            sc = rec.data[f"L{li}.indexer_scores"][0][0].numpy().astype(np.float32)
            nvis = (pos + 1) // 4
            sc = np.where(np.arange(sc.shape[1])[None, :] < nvis[:, None], sc, -np.inf).astype(np.float32)
            out.npy(f"{mode}/indexer_scores.L{li}.npy", sc,
                    f"[{mode}] layer {li} indexer score I(p, j) for every position p and compressed row j (-inf = not "
                    f"visible yet); ties/near-ties explain selection differences")
            if mode == "simon":
                kin = rec.data[f"L{li}.indexer_scorer_in"][0][1][0].numpy()
                out.npy(f"{mode}/indexer_kv.L{li}.npy", kin,
                        f"[{mode}] layer {li} indexer compressed keys j = 0..{kin.shape[0] - 1} as scored: RoPE at 4j, "
                        f"Hadamard, FP4-rounded per 32")
    if mode == "simon" and a["name"] != "tiny-clamp":
        p = INTERMEDIATE_POS
        for k, v in rec.data.items():
            if k.endswith((".kv_norm_out", ".comp_norm_out", ".indexer_topk", ".indexer_scores", ".indexer_scorer_in")):
                continue
            x = v[0]
            if k.endswith(".router"):
                _, w, idx = x
                out.npy(f"intermediates/{k}_weights.npy", w[p].numpy(), f"router weights (after scale) at position {p}")
                out.npy(f"intermediates/{k}_experts.npy", idx[p].numpy().astype(np.int32),
                        f"router expert ids at position {p}")
                continue
            if k.endswith(".q_normed"):
                arr = x[0, :, p].numpy()  # [H, head_dim] (module output is [B, H, S, head_dim])
            else:
                arr = x[0, p].numpy() if x.dim() >= 2 else x.numpy()
            what = INTERMEDIATE_DESC.get(k.split(".")[-1], k)
            out.npy(f"intermediates/{k}.npy", arr, f"[simon] {k}: {what}; position {p} of tokens/main (full prefill)")


@torch.no_grad()
def clamp_stats(model, a, seqs):
    """How often the SwiGLU clamp fires on the main sequence (sim off inputs; routed experts per hit)."""
    lim = a["swiglu_limit"]
    counts = {"up_clamped": 0, "gate_clamped": 0, "entries": 0}
    hs = []

    def shared_hook(mod, inp, out):
        x = inp[0]
        g = mod.gate_proj(x)
        u = mod.up_proj(x)
        counts["up_clamped"] += int((u.abs() > lim).sum())
        counts["gate_clamped"] += int((g > lim).sum())
        counts["entries"] += int(u.numel())

    def exp_pre(mod, args):
        x, idx, _ = args
        for e in range(mod.num_experts):
            tok, _ = torch.where(idx == e)
            if tok.numel():
                gu = torch.nn.functional.linear(x[tok], mod.gate_up_proj[e])
                g, u = gu.chunk(2, dim=-1)
                counts["up_clamped"] += int((u.abs() > lim).sum())
                counts["gate_clamped"] += int((g > lim).sum())
                counts["entries"] += int(u.numel())

    for layer in model.model.layers:
        hs.append(layer.mlp.shared_experts.register_forward_hook(shared_hook))
        hs.append(layer.mlp.experts.register_forward_pre_hook(exp_pre))
    run_prefill(model, seqs["main"])
    for h in hs:
        h.remove()
    return counts


def external_mtp(d: pathlib.Path) -> dict:
    """MTP outputs are produced by the official-code helper (transformers has no MTP) and dropped into the
    config directory as mtp*.npy (or mtp/); generate.sh never writes or deletes them, it only lists them."""
    files = {}
    for p in sorted(list(d.glob("mtp*.npy")) + list(d.glob("mtp/**/*.npy"))):
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
            files[p.relative_to(d).as_posix()] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        except Exception as e:  # noqa: BLE001
            files[p.relative_to(d).as_posix()] = {"error": str(e)}
    return {"producer": "official DeepSeek inference code run by the official-code helper (not regenerated by "
                        "scripts/reference/generate.sh); see tests/fixtures/agreement-official.md",
            "status": "present" if files else "pending", "files": files}


def versions():
    import gguf, ml_dtypes, safetensors, tokenizers, transformers
    from importlib.metadata import version
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__, "ml_dtypes": ml_dtypes.__version__,
            "gguf": version("gguf"), "tokenizers": tokenizers.__version__}


def generate_config(name, root: pathlib.Path, stage, log):
    a = configs.get(name)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    out = Out(d)
    # remove what an earlier run of this generator wrote (these sub-directories are ours alone;
    # files of other helpers, e.g. mtp*.npy, are left untouched)
    import shutil
    for sub in (["tokens"] + (["simon", "simoff", "simact", "intermediates"] if stage == "all" else [])):
        if (d / sub).is_dir():
            shutil.rmtree(d / sub)
    seqs = token_sequences(a)
    set_determinism()
    ts = write_model_files(a, d, out, seqs)
    stats = None
    if stage == "all":
        stats = reference_outputs(a, d, out, ts, seqs, log)
    manifest = {
        "config": name,
        "description": {
            "tiny": "Flash-like schedule: L0 SWA+hash MoE, L1 CSA+hash, L2 HCA+score, L3 CSA+score, MTP SWA+score; "
                    "w1/w3 of even experts in score layers and the last layer's shared expert scaled x5 so the "
                    "SwiGLU clamp (10) fires on some entries",
            "tiny-clamp": "the weights of tiny (same seed) with swiglu_limit 0.5: clamp active on most entries",
            "tiny-quant": "official storage: FP8 e4m3 + 128x128 E8M0 dense GEMMs, FP4 e2m1 + per-32 E8M0 routed "
                          "experts, BF16/F32 elsewhere as in the real checkpoint; reference uses the dequantised values",
            "tiny-pro": "Pro schedule: HCA, HCA, CSA(hash), HCA, CSA, MTP SWA; top-k 16, 4 output groups, route scale 2.5",
        }[name],
        "args": a,
        "hf_config": configs.hf_config(a),
        "reference": {
            "model": "transformers DeepseekV4ForCausalLM (eager, float32, torch.set_num_threads(1), deterministic "
                     "algorithms) with dsv4ref.sim quantisation-simulation hooks",
            "sim_modes": {m: SIM_MODES[m] for m in modes_for(a)},
            "intermediate_position": INTERMEDIATE_POS,
            "sequences": {"main": {"tokens": T_MAIN, "decode_prefill": P_MAIN},
                          "short": {"tokens": T_SHORT, "decode_prefill": P_SHORT},
                          **({"long": {"tokens": T_LONG, "decode_prefill": P_LONG, "stride": STRIDE_LONG}}
                             if name == "tiny" else {})},
            "mtp": "not produced by transformers (it has no MTP); MTP logits come from the official-code helper: "
                   "see the 'mtp' entry below / tests/fixtures/agreement-official.md",
        },
        "mtp": external_mtp(d),
        "provenance": {
            "versions": versions(),
            "weight_seed": a["seed"], "sequence_seed": SEQ_SEED,
            "command": "scripts/reference/generate.sh",
            "generator": "scripts/reference/dsv4ref (python -m dsv4ref.fixtures)",
        },
        "stats": stats,
        "files": dict(sorted(out.files.items())),
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False, allow_nan=True) + "\n",
                                     encoding="utf-8")
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", default=",".join(configs.CONFIGS))
    ap.add_argument("--stage", default="all", choices=["all", "model"])
    args = ap.parse_args(argv)
    root = pathlib.Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    vocab.write(root)  # shared copy of the toy tokenizer at tests/fixtures/tokenizer.json

    def log(s):
        print(s, file=sys.stderr, flush=True)

    for name in args.configs.split(","):
        log(f"config {name}")
        generate_config(name, root, args.stage, log)


if __name__ == "__main__":
    main()
