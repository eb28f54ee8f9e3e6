#!/usr/bin/env python3
"""Build full-size *sparse* GGUF v3 files from the public DeepSeek-V4-Flash header facts.

Reads the line-format facts in shared/data/real-headers/*.txt (README.md there, "Line format"),
and for each flavour writes the real metadata and the full tensor table, then leaves the data
section as a hole (f.truncate): the apparent size is the real model size, the disk usage is only
the header. No tensor data is ever written.

Per flavour it also writes tests/fixtures/real-headers/<flavour>.json.gz (gzip of JSON): every key with its value,
GGUF type and source level (verbatim / reported / code / inferred), the keys known to be missing,
the tensor table (name, ggml type, shape, shard, offset), type counts and size checks against the
published numbers.

Standard library only. See scripts/real_headers/README.md.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import struct
import sys
from collections import Counter, OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FACTS = REPO.parent / "shared" / "data" / "real-headers"
DEFAULT_TOKENIZER = REPO / "third_party" / "tokenizer" / "deepseek-v4" / "tokenizer.json"
DEFAULT_OUT = REPO / "build" / "sparse"
DEFAULT_SPEC = REPO / "tests" / "fixtures" / "real-headers"

# ---------------------------------------------------------------------------------------------
# ggml types: id -> (name, block elements, block bytes). 42 is the nisparks fork's F8_E4M3_B128
# (upstream uses 42 for Q2_0); it is only ever written for the nsparks flavour.
GGML = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
    "IQ2_XXS": (16, 256, 66), "IQ2_XS": (17, 256, 74), "IQ3_XXS": (18, 256, 98),
    "IQ1_S": (19, 256, 50), "IQ3_S": (21, 256, 110), "IQ2_S": (22, 256, 82), "IQ1_M": (29, 256, 56),
    "I32": (26, 1, 4), "BF16": (30, 1, 2), "MXFP4": (39, 32, 17), "F8_E4M3_B128": (42, 128, 129),
}

ALIGN = 32

# gguf value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
TYPE_NAMES = {"u8": T_U8, "i8": T_I8, "u16": T_U16, "i16": T_I16, "u32": T_U32, "i32": T_I32,
              "f32": T_F32, "bool": T_BOOL, "str": T_STR, "u64": T_U64, "i64": T_I64, "f64": T_F64}
SCALAR_FMT = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
              T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


# ---------------------------------------------------------------------------------------------
# fact files

class Fact:
    __slots__ = ("rec", "body", "src", "level", "file", "line")

    def __init__(self, rec, body, src, level, file, line):
        self.rec, self.body, self.src, self.level, self.file, self.line = rec, body, src, level, file, line

    def cite(self):
        return f"{self.file}:{self.line}"


def parse_facts(path: Path) -> list[Fact]:
    """`RECORD fields | src=<ID>[,<ID>] | <level>` per line; '#' lines and blanks are skipped."""
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" | ", 2)
        if len(parts) != 3 or not parts[1].startswith("src="):
            raise ValueError(f"{path.name}:{n}: not in the line format: {line!r}")
        head, src, level = parts
        rec, _, body = head.partition(" ")
        out.append(Fact(rec, body.strip(), src[4:], level.strip(), path.name, n))
    return out


def expand_layers(spec: str, n_layer: int) -> list[int]:
    """'N' -> all; '{2,4,..,42}', '{3..42}', '{0,1,2}' -> lists."""
    if spec == "N":
        return list(range(n_layer))
    m = re.fullmatch(r"\{(.*)\}", spec)
    if not m:
        raise ValueError(spec)
    inner = m.group(1)
    m2 = re.fullmatch(r"(\d+),(\d+),\.\.,(\d+)", inner)
    if m2:
        a, b, c = map(int, m2.groups())
        return list(range(a, c + 1, b - a))
    m2 = re.fullmatch(r"(\d+)\.\.(\d+)", inner)
    if m2:
        a, c = map(int, m2.groups())
        return list(range(a, c + 1))
    return [int(x) for x in inner.split(",")]


def canonical_tensors(facts: list[Fact], n_layer: int = 43):
    """shapes.txt -> [(name, ne, family, layer)] : globals first, then layer by layer in the
    family order of shapes.txt (the order llama.cpp's converter walks the HF checkpoint is not
    public; see README)."""
    globals_, fams = [], []
    for f in facts:
        if f.rec != "TENSOR":
            continue
        m = re.fullmatch(r"(\S+) ne=\[([\d,]+)\] (\S+)", f.body)
        name, ne = m.group(1), [int(x) for x in m.group(2).split(",")]
        if name.startswith("blk."):
            mm = re.fullmatch(r"blk\.(N|\{[^}]*\})\.(.*)", name)
            lspec, rest = mm.group(1), mm.group(2)
            fams.append((lspec, rest, ne))
        else:
            globals_.append((name, ne, name.rsplit(".", 1)[0], -1))
    out = list(globals_)
    for il in range(n_layer):
        for lspec, rest, ne in fams:
            if il in expand_layers(lspec, n_layer):
                out.append((f"blk.{il}.{rest}", ne, rest.rsplit(".", 1)[0], il))
    return out


# GGUF family -> the HF checkpoint name it comes from (team doc §2.4), used only to sort.
HF_NAME = {
    "token_embd": "embed.weight", "output_norm": "norm.weight", "output": "head.weight",
    "output_hc_fn": "hc_head_fn", "output_hc_base": "hc_head_base", "output_hc_scale": "hc_head_scale",
    "attn_norm": "attn_norm.weight", "attn_sinks": "attn.attn_sink", "attn_q_a": "attn.wq_a.weight",
    "attn_q_a_norm": "attn.q_norm.weight", "attn_q_b": "attn.wq_b.weight", "attn_kv": "attn.wkv.weight",
    "attn_kv_a_norm": "attn.kv_norm.weight", "attn_output_a": "attn.wo_a.weight",
    "attn_output_b": "attn.wo_b.weight", "hc_attn_fn": "hc_attn_fn", "hc_attn_base": "hc_attn_base",
    "hc_attn_scale": "hc_attn_scale", "hc_ffn_fn": "hc_ffn_fn", "hc_ffn_base": "hc_ffn_base",
    "hc_ffn_scale": "hc_ffn_scale", "attn_compressor_kv": "attn.compressor.wkv.weight",
    "attn_compressor_gate": "attn.compressor.wgate.weight", "attn_compressor_ape": "attn.compressor.ape",
    "attn_compressor_norm": "attn.compressor.norm.weight",
    "indexer.proj": "attn.indexer.weights_proj.weight", "indexer.attn_q_b": "attn.indexer.wq_b.weight",
    "indexer_compressor_kv": "attn.indexer.compressor.wkv.weight",
    "indexer_compressor_gate": "attn.indexer.compressor.wgate.weight",
    "indexer_compressor_ape": "attn.indexer.compressor.ape",
    "indexer_compressor_norm": "attn.indexer.compressor.norm.weight",
    "ffn_gate_inp": "ffn.gate.weight", "ffn_gate_tid2eid": "ffn.gate.tid2eid", "exp_probs_b": "ffn.gate.bias",
    "ffn_norm": "ffn_norm.weight", "ffn_gate_shexp": "ffn.shared_experts.w1.weight",
    "ffn_up_shexp": "ffn.shared_experts.w3.weight", "ffn_down_shexp": "ffn.shared_experts.w2.weight",
}
EXPERT_ORDER = ("ffn_gate_exps", "ffn_down_exps", "ffn_up_exps")  # HF w1, w2, w3


def census_order(tensors):
    """The tensor order that reproduces the unsloth UD-IQ3_XXS census exactly (per-shard tensor
    counts 0/660/620/48 AND per-shard tensor bytes, see README): global tensors first, then layers
    in numeric order; inside a layer the tensors sorted by their HF checkpoint name, with the three
    merged routed-expert tensors (w1, w2, w3) after all others of the layer. Any expert position
    after ffn.gate.bias fits the census equally; 'end of layer' is a choice (inferred)."""
    def key(t):
        name, ne, fam, il = t
        if fam in EXPERT_ORDER:
            return (il, "\x7f", EXPERT_ORDER.index(fam))
        return (il, HF_NAME[fam], 0)
    return sorted(tensors, key=key)


def ratio(il: int) -> int:
    return 0 if il < 2 else (4 if il % 2 == 0 else 128)


def n_elements(ne):
    n = 1
    for x in ne:
        n *= x
    return n


def tensor_bytes(ne, tname):
    _, blk, size = GGML[tname]
    n = n_elements(ne)
    if ne[0] % blk:
        raise ValueError(f"ne0={ne[0]} not a multiple of the {tname} block {blk}")
    return n // blk * size


def pad(n, a=ALIGN):
    return (n + a - 1) // a * a


# ---------------------------------------------------------------------------------------------
# GGUF serialisation

def s_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def s_value(vt: int, v) -> bytes:
    if vt == T_STR:
        return s_str(v)
    if vt == T_ARR:
        et, items = v
        if et == T_STR:
            body = b"".join(s_str(x) for x in items)
        else:
            body = struct.pack("<" + SCALAR_FMT[et][1] * len(items), *items)
        return struct.pack("<IQ", et, len(items)) + body
    return struct.pack(SCALAR_FMT[vt], v)


def gguf_header(kvs, tensors) -> bytes:
    """kvs: [(key, vt, value)], tensors: [(name, ne, type_id, offset)] -> header bytes, padded to
    ALIGN (the data section starts right after)."""
    out = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kvs))]
    for key, vt, v in kvs:
        out.append(s_str(key) + struct.pack("<I", vt) + s_value(vt, v))
    for name, ne, tid, off in tensors:
        out.append(s_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) +
                   struct.pack("<IQ", tid, off))
    h = b"".join(out)
    return h + b"\0" * (pad(len(h)) - len(h))


# ---------------------------------------------------------------------------------------------
# metadata model

class KV:
    """One key: value, type, source level and citation."""

    def __init__(self, key, vt, value, level, src, et=None, note=""):
        self.key, self.vt, self.value, self.level, self.src, self.et, self.note = (
            key, vt, value, level, src, et, note)

    def gguf(self):
        if self.vt == T_ARR:
            return (self.key, T_ARR, (self.et, self.value))
        return (self.key, self.vt, self.value)

    def spec(self):
        v = self.value
        if self.vt == T_ARR:
            n = len(v)
            shown = v if n <= 64 else v[:8]
            v = {"count": n, "elem_type": [k for k, x in TYPE_NAMES.items() if x == self.et][0],
                 "values" if n <= 64 else "first": shown}
        d = OrderedDict(key=self.key,
                        type="arr" if self.vt == T_ARR else [k for k, x in TYPE_NAMES.items() if x == self.vt][0],
                        value=v, level=self.level, src=self.src)
        if self.note:
            d["note"] = self.note
        return d


LEVEL_RANK = {"verbatim": 0, "code": 1, "reported": 2, "inferred": 3}


def level_rank(level):
    return min((r for k, r in LEVEL_RANK.items() if level.startswith(k)), default=9)


def find_kv_fact(facts, key):
    """The best-level KV/ARR line whose first key is exactly this key, or None."""
    hits = []
    for f in facts:
        if f.rec in ("KV", "ARR"):
            toks = f.body.split()
            if len(toks) >= 2 and toks[1] == key:
                hits.append(f)
    return min(hits, key=lambda f: level_rank(f.level)) if hits else None


def multi_kv_values(facts):
    """Values given inside multi-key lines such as
    'KV - deepseek4.attention.head_count u32 = 64 ; head_count_kv = 1 ; key_length = 512'
    (ds4-q2.txt code lines). Later keys are relative to a namespace of the keys before them; only
    keys known in MODEL are taken. -> {key: (value, fact)}"""
    out = {}
    for f in facts:
        if f.rec != "KV":
            continue
        parts = f.body.split(" ; ")
        m = re.match(r"(\S+) (\S+) (?:(u32|i32|f32|bool|str) )?= (\S+)", parts[0])
        if not m:
            continue
        prev = [m.group(2)]
        items = [(m.group(2), m.group(4))]
        for part in parts[1:]:
            m2 = re.match(r"(\S+)(?: (?:u32|i32|f32|bool|str))? = (\S+)", part.strip())
            if not m2:
                continue
            rel, val = m2.groups()
            full = None
            for base in reversed(prev):
                ns = base
                while "." in ns and full is None:
                    ns = ns.rsplit(".", 1)[0]
                    if f"{ns}.{rel}" in MODEL:
                        full = f"{ns}.{rel}"
                if full:
                    break
            if full:
                items.append((full, val))
                prev.append(full)
        for key, val in items:
            if key not in MODEL:
                continue
            vt = MODEL[key][0]
            try:
                v = {T_F32: float, T_U32: int, T_BOOL: lambda x: x == "true"}[vt](val)
            except (KeyError, ValueError):
                continue
            out.setdefault(key, (v, f))
    return out


def parse_scalar(f: Fact):
    """'<idx> key <type> = value [...]' -> (idx or None, vt, value, truncated?) or None."""
    m = re.fullmatch(r"(\S+) (\S+) (u8|i8|u16|i16|u32|i32|f32|bool|str|u64|i64|f64) = (.*)", f.body)
    if not m:
        return None
    idx, _, t, val = m.groups()
    vt = TYPE_NAMES[t]
    idx = None if idx == "-" else int(idx)
    if vt == T_STR:
        trunc = val.endswith("(truncated)") or "..." in val or "cut off" in val
        if "(value cut off" in val:
            return (idx, vt, None, True)
        val = val.replace(" (truncated by the logger)", "").replace(" (truncated)", "")
        return (idx, vt, val, trunc)
    if vt == T_BOOL:
        return (idx, vt, val.split()[0] == "true", False)
    num = val.split()[0]
    if "cut off" in val:
        return (idx, vt, None, True)
    return (idx, vt, float(num) if vt in (T_F32, T_F64) else int(num), False)


# The DeepSeek-V4-Flash values, each with the fact that states it (used where a flavour's own files
# do not give the key: such fills are recorded as 'inferred' with this citation).
MODEL = OrderedDict([
    ("general.architecture", (T_STR, "deepseek4", "upstream-mxfp4.txt (UP-BENCH,CLUB)")),
    ("general.type", (T_STR, "model", "upstream-mxfp4.txt NOTE kv 0,1 convention")),
    ("general.sampling.top_p", (T_F32, 1.0, "upstream-mxfp4.txt KV 2 (I22319)")),
    ("general.sampling.temp", (T_F32, 1.0, "upstream-mxfp4.txt KV 3 (I22319)")),
    ("general.name", (T_STR, "DeepSeek V4 Flash", "upstream-mxfp4.txt KV 4 (I22319)")),
    ("general.size_label", (T_STR, "256x8.4B", "upstream-mxfp4.txt KV 5 / unsloth-common KV 9")),
    ("general.license", (T_STR, "mit", "upstream-mxfp4.txt KV 6 / unsloth-common KV 10")),
    ("deepseek4.block_count", (T_U32, 43, "upstream-mxfp4.txt KV 7")),
    ("deepseek4.context_length", (T_U32, 1048576, "upstream-mxfp4.txt KV 8")),
    ("deepseek4.embedding_length", (T_U32, 4096, "upstream-mxfp4.txt KV 9")),
    ("deepseek4.attention.head_count", (T_U32, 64, "upstream-mxfp4.txt KV 10")),
    ("deepseek4.attention.head_count_kv", (T_U32, 1, "upstream-mxfp4.txt KV 11")),
    ("deepseek4.rope.scaling.type", (T_STR, "yarn", "upstream-mxfp4.txt KV 12")),
    ("deepseek4.rope.scaling.factor", (T_F32, 16.0, "upstream-mxfp4.txt KV 13")),
    ("deepseek4.rope.scaling.original_context_length", (T_U32, 65536, "upstream-mxfp4.txt KV 14")),
    ("deepseek4.rope.scaling.yarn_beta_fast", (T_F32, 32.0, "upstream-mxfp4.txt KV 15 ('32 per config'); ds4-q2.txt code")),
    ("deepseek4.rope.scaling.yarn_beta_slow", (T_F32, 1.0, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.rope.freq_base", (T_F32, 10000.0, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.attention.layer_norm_rms_epsilon", (T_F32, 1e-6, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.expert_used_count", (T_U32, 6, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.expert_gating_func", (T_U32, 4, "unsloth-common.txt (Q3KXL 'the real file carries 4'); ds4-q2.txt (AZCONV)")),
    ("deepseek4.attention.key_length", (T_U32, 512, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.attention.value_length", (T_U32, 512, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.vocab_size", (T_U32, 129280, "ds4-q2.txt code (DS4SRC required, AZCONV written); nsparks KV 24")),
    ("deepseek4.rope.dimension_count", (T_U32, 64, "ds4-q2.txt code; nsparks KV 26")),
    ("deepseek4.attention.q_lora_rank", (T_U32, 1024, "ds4-q2.txt code; nsparks KV 25")),
    ("deepseek4.attention.output_lora_rank", (T_U32, 1024, "unsloth-common.txt KV 45 (IK2218)")),
    ("deepseek4.attention.output_group_count", (T_U32, 8, "unsloth-common.txt KV 44 (IK2218)")),
    ("deepseek4.attention.compress_ratios", (T_ARR, None, "unsloth-common.txt ARR 46 (IK2218, 44 entries) / ARR - (Q3KXL, 46 entries)")),
    ("deepseek4.attention.compress_rope_freq_base", (T_F32, 160000.0, "unsloth-common.txt KV 47 (IK2218)")),
    ("deepseek4.expert_feed_forward_length", (T_U32, 2048, "ds4-q2.txt code; nsparks KV 30")),
    ("deepseek4.expert_count", (T_U32, 256, "ds4-q2.txt code; nsparks KV 31")),
    ("deepseek4.expert_shared_count", (T_U32, 1, "ds4-q2.txt code; nsparks KV 32")),
    ("deepseek4.expert_weights_scale", (T_F32, 1.5, "ds4-q2.txt code; nsparks KV 33")),
    ("deepseek4.hash_layer_count", (T_U32, 3, "ds4-q2.txt code (DS4SRC)")),
    ("deepseek4.expert_weights_norm", (T_BOOL, True, "ds4-q2.txt KV 36 (AZ11); nsparks KV 34")),
    ("deepseek4.swiglu_clamp_exp", (T_ARR, ("f32", [10.0] * 43), "unsloth-common.txt ARR 39 (IK2218); ds4-q2.txt ARR 37 (AZ11)")),
    ("deepseek4.swiglu_clamp_shexp", (T_ARR, ("f32", [10.0] * 43), "unsloth-common.txt ARR 40 (IK2218)")),
    ("deepseek4.attention.sliding_window", (T_U32, 128, "ds4-q2.txt KV 38 (AZ11); nsparks KV 27")),
    ("deepseek4.attention.indexer.head_count", (T_U32, 64, "unsloth-common.txt KV 41; ds4-q2.txt KV 39")),
    ("deepseek4.attention.indexer.key_length", (T_U32, 128, "unsloth-common.txt KV 42; ds4-q2.txt KV 40")),
    ("deepseek4.attention.indexer.top_k", (T_U32, 512, "unsloth-common.txt KV 43; ds4-q2.txt KV 41")),
    ("deepseek4.nextn_predict_layers", (T_U32, 1, "ds4-q2.txt KV 42 (AZ11)")),
    ("deepseek4.hyper_connection.count", (T_U32, 4, "unsloth-common.txt KV 48; ds4-q2.txt KV 43")),
    ("deepseek4.hyper_connection.sinkhorn_iterations", (T_U32, 20, "unsloth-common.txt KV 49; ds4-q2.txt KV 44")),
    ("deepseek4.hyper_connection.epsilon", (T_F32, 1e-6, "unsloth-common.txt KV 50; ds4-q2.txt KV 45")),
    ("general.quantization_version", (T_U32, 2, "unsloth-common.txt KV 65 (CLUB); ds4-q2.txt KV 46 (AZ11)")),
    ("tokenizer.ggml.model", (T_STR, "gpt2", "ds4-q2.txt KV 47 (AZ11); unsloth-UD-IQ3_XXS QL-DOC")),
    ("tokenizer.ggml.pre", (T_STR, "joyai-llm", "ds4-q2.txt KV 48 (AZ11); unsloth-UD-IQ3_XXS QL-DOC")),
    ("tokenizer.ggml.tokens", (T_ARR, "TOKENS", "unsloth-common.txt ARR 57 (arr[str,129280], first values only)")),
    ("tokenizer.ggml.token_type", (T_ARR, "TOKEN_TYPE", "unsloth-common.txt ARR 58 (arr[i32,129280] = [3,3,3,1,...])")),
    ("tokenizer.ggml.merges", (T_ARR, "MERGES", "unsloth-common.txt ARR 59 (arr[str,127741])")),
    ("tokenizer.ggml.bos_token_id", (T_U32, 0, "unsloth-common.txt KV 60 (CLUB)")),
    ("tokenizer.ggml.eos_token_id", (T_U32, 1, "unsloth-common.txt KV 61 (CLUB)")),
    ("tokenizer.ggml.padding_token_id", (T_U32, 2, "unsloth-common.txt KV 62 (CLUB)")),
    ("tokenizer.ggml.add_bos_token", (T_BOOL, False, "unsloth-common.txt KV 63 (CLUB)")),
    ("tokenizer.ggml.add_eos_token", (T_BOOL, False, "unsloth-common.txt KV 64 (CLUB)")),
])


def ratios(n):
    return [ratio(i) if i < 43 else 0 for i in range(n)]


class Tokenizer:
    """tokenizer.ggml.tokens / token_type / merges from the real DeepSeek-V4 tokenizer.json."""

    def __init__(self, path: Path):
        t = json.loads(path.read_text(encoding="utf-8"))
        vocab = t["model"]["vocab"]
        n = 129280
        toks = [None] * n
        types = [1] * n
        for s, i in vocab.items():
            toks[i] = s
        for a in t["added_tokens"]:
            toks[a["id"]] = a["content"]
            # llama.cpp converter: special added tokens are CONTROL (3), others USER_DEFINED (4)
            types[a["id"]] = 3 if a["special"] else 4
        for i in range(n):
            if toks[i] is None:  # converter fills holes with [PAD<i>] UNUSED (5)
                toks[i], types[i] = f"[PAD{i}]", 5
        self.tokens, self.types = toks, types
        self.merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]


def make_kvs(flavour_facts, order, *, absent=(), overrides=None, n_ratios=46, tok=None,
             tail=()):
    """Build the ordered KV list for `order` (a list of keys). For each key: the flavour's own
    KV/ARR fact if its value is given (verbatim/reported/...), else the MODEL value marked
    'inferred' with MODEL's citation. overrides: key -> KV (explicit decisions)."""
    overrides = overrides or {}
    kvs, notes = [], []
    for key in order:
        if key in absent:
            continue
        if key in overrides:
            kvs.append(overrides[key])
            continue
        vt, val, msrc = MODEL[key]
        fact = find_kv_fact(flavour_facts, key)
        level, src, note = "inferred", msrc, ""
        multi = multi_kv_values(flavour_facts).get(key)
        p_ok = fact is not None and fact.rec == "KV" and (parse_scalar(fact) or (0, 0, None))[2] is not None
        if multi is not None and (not p_ok or level_rank(multi[1].level) < level_rank(fact.level)):
            val, level, src = multi[0], multi[1].level, f"{multi[1].cite()} ({multi[1].src}, multi-key line)"
        elif fact is not None and fact.rec == "KV":
            p = parse_scalar(fact)
            if p and p[2] is not None and p[1] == vt and not p[3]:
                val, level, src = p[2], fact.level, f"{fact.cite()} ({fact.src})"
            elif p and p[3]:
                note = f"{fact.cite()} shows this key with a cut-off value; value from {msrc}"
                level, src = "inferred", f"{fact.cite()} ({fact.src}) key verbatim; value {msrc}"
        elif fact is not None and fact.rec == "ARR":
            level, src = "inferred", f"{fact.cite()} ({fact.src}) key/type/length {fact.level}; values {msrc}"
        if key == "deepseek4.attention.compress_ratios":
            kv = KV(key, T_ARR, ratios(n_ratios), level, src, et=T_I32,
                    note=f"{n_ratios} entries: [0,0,4,128,...] for layers 0..42, then 0 (ratio schedule: shapes.txt NOTE layer schedule)")
        elif vt == T_ARR and val == "TOKENS":
            kv = KV(key, T_ARR, tok.tokens, "inferred", src + "; filled from third_party/tokenizer/deepseek-v4/tokenizer.json (vocab ids, added tokens by id)", et=T_STR)
        elif vt == T_ARR and val == "TOKEN_TYPE":
            kv = KV(key, T_ARR, tok.types, "inferred", src + "; filled from tokenizer.json: added special -> 3, added non-special -> 4, else 1", et=T_I32)
        elif vt == T_ARR and val == "MERGES":
            kv = KV(key, T_ARR, tok.merges, "inferred", src + "; filled from tokenizer.json model.merges", et=T_STR)
        elif vt == T_ARR:
            et, items = val
            kv = KV(key, T_ARR, items, level, src, et=TYPE_NAMES[et])
        else:
            kv = KV(key, vt, val, level, src, note=note)
        kvs.append(kv)
    kvs.extend(tail)
    return kvs


# ---------------------------------------------------------------------------------------------
# tensor types per flavour

def role_table(facts):
    """ROLE lines -> {tensor-name-pattern: [(type, count), ...]} (simple forms only)."""
    roles = {}
    for f in facts:
        if f.rec != "ROLE":
            continue
        pat, _, spec = f.body.partition(" ")
        items = []
        for part in spec.split(" + "):
            m2 = re.match(r"([A-Z0-9_]+)(?: ?x(\d+))?(?:\s|$)", part.strip() + " ")
            if not m2 or m2.group(1) not in GGML:
                items = None
                break
            items.append((m2.group(1), int(m2.group(2)) if m2.group(2) else None))
        if items:
            roles[pat] = (items, f)
    return roles


def layer_table(facts):
    out = {}
    for f in facts:
        if f.rec == "LAYER":
            m = re.fullmatch(r"(\d+) gate=(\S+) up=(\S+) down=(\S+)", f.body)
            il, g, u, d = m.groups()
            out[int(il)] = {"ffn_gate_exps": g, "ffn_up_exps": u, "ffn_down_exps": d}
    return out


MINORITY_LAYER = 22


def types_from_census(tensors, facts):
    """unsloth UD-IQ3_XXS: per-role types from ROLE lines, routed experts from LAYER lines.
    Families with 'A x1 + B x42' get A on the lowest layer (the census does not say which)."""
    roles = role_table(facts)
    layers = layer_table(facts)
    out, prov = [], {}
    for name, ne, fam, il in tensors:
        key = name if il < 0 else None
        rest = name.split(".", 2)[2] if il >= 0 else None
        cand = None
        if il < 0:
            cand = roles.get(name)
        else:
            for pat in (f"blk.N.{rest}", f"blk.{{0,1,2}}.{rest}", f"blk.{{3..42}}.{rest}"):
                if pat in roles:
                    cand = roles[pat]
                    break
        if fam in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps") and il in layers:
            t = layers[il][fam]
            prov[name] = "verbatim (LAYER line)"
        elif cand is None:
            raise KeyError(f"no ROLE for {name}")
        else:
            items, f = cand
            if len(items) == 1:
                t = items[0][0]
                prov[name] = "verbatim (ROLE line)"
            else:
                # 'Q8_0 x1 + Q6_K x42': the census does not name the layer. Its per-shard tensor
                # bytes put it in shard 3 (layers 22..40 with census_order); we use MINORITY_LAYER.
                first_t, first_n = items[0]
                assert first_n == 1, items
                t = first_t if il == MINORITY_LAYER else items[1][0]
                prov[name] = (f"inferred (ROLE gives 1 x {first_t}, not the layer; the census shard bytes "
                              f"force a layer in 22..40; blk.{MINORITY_LAYER} used)")
        out.append(t)
    return out, prov


def types_by_rule(tensors, rule):
    out, prov = [], {}
    for name, ne, fam, il in tensors:
        t, why = rule(name, ne, fam, il)
        out.append(t)
        prov[name] = why
    return out, prov


def is_1d(ne):
    return len(ne) == 1


def rule_upstream(name, ne, fam, il):
    """(1) llama-quantize MXFP4_MOE from the converter's BF16 intermediate: experts MXFP4, router
    BF16, 1-D F32, tid2eid I32; hc_*_fn / *_ape / indexer.proj stay F32 like in the unsloth census
    (same quantizer); every other 2-D tensor Q8_0 (upstream-mxfp4.txt ROLE lines, all inferred)."""
    if fam.endswith("_exps"):
        return "MXFP4", "inferred (upstream-mxfp4.txt ROLE ffn_*_exps MXFP4 x129)"
    if fam == "ffn_gate_tid2eid":
        return "I32", "inferred (ROLE tid2eid I32 x3)"
    if fam == "ffn_gate_inp":
        return "BF16", "inferred (ROLE ffn_gate_inp BF16 x43)"
    if is_1d(ne):
        return "F32", "inferred (ROLE 1-D tensors F32)"
    if fam in ("hc_attn_fn", "hc_ffn_fn", "output_hc_fn", "attn_compressor_ape",
               "indexer_compressor_ape", "indexer.proj"):
        return "F32", "inferred (kept F32 by llama-quantize: QL-CUR census of the same quantizer)"
    return "Q8_0", "inferred (ROLE MXFP4_MOE: other 2-D tensors Q8_0)"


def rule_ds4(expert_types):
    def rule(name, ne, fam, il):
        why = "code (ds4-q2.txt TENSOR line, ds4.c contract)"
        if fam in expert_types:
            return expert_types[fam], "reported (ds4 card recipe)"
        if fam == "ffn_gate_tid2eid":
            return "I32", why
        if is_1d(ne):
            return "F32", why
        if fam in ("attn_q_a", "attn_q_b", "attn_kv", "attn_output_a", "attn_output_b",
                   "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "output"):
            return "Q8_0", why
        return "F16", why  # token_embd, hc_*_fn, compressor, indexer, ffn_gate_inp
    return rule


def rule_mtp(name, ne, fam, il):
    why = "code (ds4-mtp.txt TENSOR line)"
    if fam.endswith("_exps"):
        return "Q4_K", "code+inferred (ds4-mtp.txt: Q4_K from the file name)"
    if fam in ("hc_head_fn", "hc_attn_fn", "hc_ffn_fn", "ffn_gate_inp"):
        return "F32", "inferred (ds4-mtp.txt: F16|F32 plain; 'F32' in the file name)"
    if is_1d(ne):
        return "F32", why
    return "Q8_0", why


NSP_FP8 = ("attn_q_a", "attn_q_b", "attn_kv", "attn_output_a", "attn_output_b",
           "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
           "attn_compressor_kv", "attn_compressor_gate", "indexer.attn_q_b",
           "indexer_compressor_kv", "indexer_compressor_gate")


def rule_nsparks(name, ne, fam, il):
    if fam.endswith("_exps"):
        return "MXFP4", "reported (NSP-CARD: MoE expert weights MXFP4)"
    if fam in NSP_FP8:
        return "F8_E4M3_B128", ("reported/inferred (NSP-CARD: dense FP8 weights -> type 42; which "
                                "families are FP8 in HF is inferred: upper bound 489)")
    if fam == "ffn_gate_tid2eid":
        return "I32", "inferred (TYPECOUNT I32 3)"
    if fam in ("token_embd", "output", "ffn_gate_inp"):
        return "BF16", "inferred (ROLE BF16-sourced tensors BF16, probable)"
    return "F32", "inferred (ROLE F32-sourced tensors F32)"


# ---------------------------------------------------------------------------------------------
# writing

def layout(tensors, types):
    """Offsets relative to each shard's data section, 32-byte aligned."""
    rows, off = [], 0
    for (name, ne, fam, il), t in zip(tensors, types):
        nb = tensor_bytes(ne, t)
        rows.append({"name": name, "ne": ne, "type": t, "offset": off, "n_bytes": nb})
        off = pad(off + nb)
    return rows, off


def write_sparse(path: Path, kvs, rows, data_size, dry=False):
    header = gguf_header([k.gguf() for k in kvs],
                         [(r["name"], r["ne"], GGML[r["type"]][0], r["offset"]) for r in rows])
    total = len(header) + data_size
    if not dry:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(total)  # the data section is a hole: nothing is written
    return len(header), total


def split_kvs(i, n, total_tensors):
    lvl, src = "inferred", "llama-quantize --keep-split / gguf-split: split.no (u16, 0-based), split.count (u16), split.tensors.count (i32) in every shard (team doc §3.1, unsloth-common NOTE after kv 67)"
    return [KV("split.no", T_U16, i, lvl, src), KV("split.count", T_U16, n, lvl, src),
            KV("split.tensors.count", T_I32, total_tensors, lvl, src)]


def file_facts(facts):
    out = {}
    for f in facts:
        if f.rec == "FILE":
            k, _, v = f.body.partition(" = ")
            out.setdefault(k.strip(), (v.strip(), f))
    return out


def shard_facts(facts, label=None):
    out = []
    for f in facts:
        if f.rec == "SHARD":
            b = f.body
            if label:
                if not b.startswith(label + " "):
                    continue
                b = b[len(label) + 1:]
            elif not re.match(r"\d+/\d+ ", b):
                continue
            m = re.match(r"(\d+)/(\d+) bytes=(\d+)", b)
            if any(x["i"] == int(m.group(1)) for x in out):
                continue  # a later upload's line for the same shard (e.g. the IQ3_XXS legacy set)
            d = {"i": int(m.group(1)), "n": int(m.group(2)), "bytes": int(m.group(3)), "cite": f.cite()}
            m2 = re.search(r"tensors=(\d+)", b)
            if m2:
                d["tensors"] = int(m2.group(1))
            m2 = re.search(r"tensor_bytes=(\d+)", b)
            if m2:
                d["tensor_bytes"] = int(m2.group(1))
            out.append(d)
    return out


def typecount_facts(facts, exclude_src=None):
    out = {}
    for f in facts:
        if f.rec == "TYPECOUNT" and not (exclude_src and exclude_src in f.src):
            m = re.match(r"([A-Z0-9_]+)\((\d+)\) (\d+)(?: elements=(\d+))?(?: bytes=(\d+))?", f.body)
            if m:
                out.setdefault(m.group(1), {"count": int(m.group(3)), "elements": m.group(4) and int(m.group(4)),
                                            "bytes": m.group(5) and int(m.group(5)), "level": f.level,
                                            "cite": f.cite()})
    return out


def type_summary(rows):
    c = OrderedDict()
    for r in sorted(rows, key=lambda r: GGML[r["type"]][0]):
        d = c.setdefault(r["type"], {"id": GGML[r["type"]][0], "count": 0, "elements": 0, "bytes": 0})
        d["count"] += 1
        d["elements"] += n_elements(r["ne"])
        d["bytes"] += r["n_bytes"]
    return c


def compare_typecounts(summary, published):
    out = {}
    for t, p in published.items():
        s = summary.get(t, {"count": 0, "elements": 0, "bytes": 0})
        d = {"published": {k: p[k] for k in ("count", "elements", "bytes") if p.get(k) is not None},
             "generated": {k: s[k] for k in ("count", "elements", "bytes")},
             "level": p["level"], "cite": p["cite"]}
        d["match"] = all(d["generated"][k] == v for k, v in d["published"].items())
        out[t] = d
    for t in summary:
        if t not in published:
            out[t] = {"published": None, "generated": {k: summary[t][k] for k in ("count", "elements", "bytes")}}
    return out


# ---------------------------------------------------------------------------------------------
# flavours

UPSTREAM_ORDER = [  # I22319 turn-59 order for kv 0-15, then the converter's TextModel + DSV4 order
    "general.architecture", "general.type", "general.sampling.top_p", "general.sampling.temp",
    "general.name", "general.size_label", "general.license",
    "deepseek4.block_count", "deepseek4.context_length", "deepseek4.embedding_length",
    "deepseek4.attention.head_count", "deepseek4.attention.head_count_kv",
    "deepseek4.rope.scaling.type", "deepseek4.rope.scaling.factor",
    "deepseek4.rope.scaling.original_context_length", "deepseek4.rope.scaling.yarn_beta_fast",
    "deepseek4.rope.scaling.yarn_beta_slow", "deepseek4.rope.freq_base",
    "deepseek4.attention.layer_norm_rms_epsilon", "deepseek4.expert_used_count",
    "deepseek4.expert_gating_func", "deepseek4.attention.key_length", "deepseek4.attention.value_length",
    "deepseek4.vocab_size", "deepseek4.rope.dimension_count", "deepseek4.attention.q_lora_rank",
    "deepseek4.attention.sliding_window", "deepseek4.expert_feed_forward_length",
    "deepseek4.expert_count", "deepseek4.expert_shared_count", "deepseek4.expert_weights_scale",
    "deepseek4.expert_weights_norm", "deepseek4.hash_layer_count",
    # IK2218 kv 39-50 order (unsloth = llama-quantize of the upstream converter output)
    "deepseek4.swiglu_clamp_exp", "deepseek4.swiglu_clamp_shexp",
    "deepseek4.attention.indexer.head_count", "deepseek4.attention.indexer.key_length",
    "deepseek4.attention.indexer.top_k", "deepseek4.attention.output_group_count",
    "deepseek4.attention.output_lora_rank", "deepseek4.attention.compress_ratios",
    "deepseek4.attention.compress_rope_freq_base", "deepseek4.hyper_connection.count",
    "deepseek4.hyper_connection.sinkhorn_iterations", "deepseek4.hyper_connection.epsilon",
    "deepseek4.nextn_predict_layers",
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
    "general.quantization_version",
]

DS4_ORDER = [  # AZCONV order, kv 36-48 verbatim (AZ11), kv 20-35 counted back (ds4-q2.txt NOTE)
    "general.architecture", "general.type", "general.sampling.top_p", "general.sampling.temp",
    "general.name", "general.size_label", "general.license",
    "deepseek4.block_count", "deepseek4.context_length", "deepseek4.embedding_length",
    "deepseek4.attention.head_count", "deepseek4.attention.head_count_kv",
    "deepseek4.rope.scaling.type", "deepseek4.rope.scaling.factor",
    "deepseek4.rope.scaling.original_context_length", "deepseek4.rope.scaling.yarn_beta_fast",
    "deepseek4.rope.scaling.yarn_beta_slow", "deepseek4.rope.freq_base",
    "deepseek4.attention.layer_norm_rms_epsilon", "deepseek4.expert_used_count",
    "deepseek4.expert_gating_func", "deepseek4.attention.key_length", "deepseek4.attention.value_length",
    "general.file_type",
    "deepseek4.vocab_size", "deepseek4.rope.dimension_count", "deepseek4.attention.q_lora_rank",
    "deepseek4.attention.output_lora_rank", "deepseek4.attention.output_group_count",
    "deepseek4.attention.compress_ratios", "deepseek4.attention.compress_rope_freq_base",
    "deepseek4.expert_feed_forward_length", "deepseek4.expert_count", "deepseek4.expert_shared_count",
    "deepseek4.expert_weights_scale", "deepseek4.hash_layer_count",
    "deepseek4.expert_weights_norm", "deepseek4.swiglu_clamp_exp", "deepseek4.attention.sliding_window",
    "deepseek4.attention.indexer.head_count", "deepseek4.attention.indexer.key_length",
    "deepseek4.attention.indexer.top_k", "deepseek4.nextn_predict_layers",
    "deepseek4.hyper_connection.count", "deepseek4.hyper_connection.sinkhorn_iterations",
    "deepseek4.hyper_connection.epsilon", "general.quantization_version",
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
]


def unsloth_order():
    """unsloth 0731: kv 8-17 verbatim general block (CLUB), 18-23 verbatim (IK2240), then the
    upstream order; tokenizer arrays at 57.., quantization_version 65, file_type 66,
    quantize.imatrix.file 67 (CLUB)."""
    o = ["general.architecture", "general.type", "general.sampling.top_p", "general.sampling.temp",
         "general.name"]
    o += ["general.quantized_by", "general.size_label", "general.license", "general.repo_url",
          "general.base_model.count", "general.base_model.0.name", "general.base_model.0.version",
          "general.base_model.0.organization", "general.base_model.0.repo_url", "general.tags"]
    ds = [k for k in UPSTREAM_ORDER if k.startswith("deepseek4.")]
    o += ds
    o += ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
          "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
          "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
          "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
          "general.quantization_version", "general.file_type", "quantize.imatrix.file"]
    return o


def unsloth_general(common):
    """The verbatim unsloth 0731 general.* keys (unsloth-common.txt KV 8-17)."""
    out = {}
    for key, vt in (("general.quantized_by", T_STR), ("general.size_label", T_STR),
                    ("general.license", T_STR), ("general.repo_url", T_STR),
                    ("general.base_model.count", T_U32), ("general.base_model.0.name", T_STR),
                    ("general.base_model.0.version", T_STR), ("general.base_model.0.organization", T_STR),
                    ("general.base_model.0.repo_url", T_STR)):
        f = find_kv_fact(common, key)
        p = parse_scalar(f)
        level = f.level + ("-truncated" if p[3] else "")
        val = p[2]
        note = ""
        if key == "general.base_model.0.repo_url":
            val = val.replace("... ", "...").rstrip()
            note = "value truncated by the logger ('https://huggingface.co/deepseek-ai/De...'); written as shown"
        out[key] = KV(key, vt, val, level, f"{f.cite()} ({f.src})", note=note)
    f = find_kv_fact(common, "general.tags")
    out["general.tags"] = KV("general.tags", T_ARR, ["unsloth"], f.level, f"{f.cite()} ({f.src})", et=T_STR)
    return out


def build_flavours(facts_dir: Path, tok: Tokenizer):
    F = {p.name: parse_facts(p) for p in sorted(facts_dir.glob("*.txt"))}
    canon = census_order(canonical_tensors(F["shapes.txt"]))
    fl = []

    # ---- (1) upstream converter: 0731 llama-quantize MXFP4_MOE, single file ------------------
    up = F["upstream-mxfp4.txt"]
    kvs = make_kvs(up, UPSTREAM_ORDER + ["general.file_type"],
                   absent={"deepseek4.vocab_size", "deepseek4.nextn_predict_layers"},
                   overrides={"general.file_type": KV("general.file_type", T_U32, 38, "inferred",
                                                      "upstream-mxfp4.txt KV - general.file_type = 38 (team doc §2.3)"),
                              "general.architecture": KV("general.architecture", T_STR, "deepseek4", "verbatim",
                                                         "upstream-mxfp4.txt KV - general.architecture (UP-BENCH,CLUB)")},
                   n_ratios=46, tok=tok)
    types, prov = types_by_rule(canon, rule_upstream)
    fl.append(dict(name="upstream-mxfp4", files=["DeepSeek-V4-Flash-0731-MXFP4.gguf"], facts=up, kvs=kvs,
                   tensors=canon, types=types, prov=prov,
                   published={"total_bytes_candidates": {
                       "AtomicChat AD-MXFP4 (0731)": 154549153536, "sokann DeepSeek-V4-Flash.gguf": 156378344544,
                       "CALC MXFP4 + Q8_0 tensor data": 155106066780}},
                   absent=["deepseek4.vocab_size (ABSENT, DS4-661/Q3KXL)",
                           "deepseek4.nextn_predict_layers (ABSENT in --no-mtp main files)",
                           "deepseek4.feed_forward_length (ABSENT, Q3KXL)"],
                   missing=["tokenizer.chat_template (the converter embeds deepseek-ai-DeepSeek-V4-Flash-0731.jinja; text not in the facts)",
                            "deepseek4.embedding_length_out (team doc §2.3 says upstream writes it; not in any dump: omitted)",
                            "general.* keys beyond kv 0-6 (basename, version, base_model.*) of a pure upstream file"],
                   tc=typecount_facts(up)))

    # ---- (2) unsloth 0731 UD-IQ3_XXS (current upload, complete census) and UD-IQ2_XXS --------
    common = F["unsloth-common.txt"]
    gen = unsloth_general(common)
    for label, fname, facts_name, ftype, n_shards in (
            ("unsloth-UD-IQ3_XXS", "DeepSeek-V4-Flash-0731-UD-IQ3_XXS", "unsloth-UD-IQ3_XXS-0731.txt", 23, 4),
            ("unsloth-UD-IQ2_XXS", "DeepSeek-V4-Flash-0731-UD-IQ2_XXS", "unsloth-UD-IQ2_XXS-0731.txt", 19, 3)):
        ff = F[facts_name]
        fft = find_kv_fact(ff, "general.file_type")
        if fft is not None:
            ftkv = KV("general.file_type", T_U32, parse_scalar(fft)[2], fft.level, f"{fft.cite()} ({fft.src})")
        else:
            fileft = file_facts(ff).get("general.file_type")
            ftkv = KV("general.file_type", T_U32, ftype, "inferred",
                      f"{fileft[1].cite()} ({fileft[1].src}, {fileft[1].level} for the legacy upload; the current upload's value is not in the census)")
        imf = find_kv_fact(common, "quantize.imatrix.file")
        ov = dict(gen)
        ov["general.file_type"] = ftkv
        ov["quantize.imatrix.file"] = KV("quantize.imatrix.file", T_STR, "DeepSeek-V4-Flash-0731-GGUF/imatrix...",
                                         "verbatim-truncated", f"{imf.cite()} ({imf.src})",
                                         note="logger cut the value; written as shown")
        q3 = [f for f in common if f.rec == "ARR" and "compress_ratios" in f.body and "46" in f.body][0]
        ov["deepseek4.attention.compress_ratios"] = KV(
            "deepseek4.attention.compress_ratios", T_ARR, ratios(46), "inferred",
            f"{q3.cite()} ({q3.src}, {q3.level}: 46 entries for 0731, element type not shown); element type i32 from "
            "unsloth-common.txt ARR 46 (IK2218, pre-0731 arr[i32,44])", et=T_I32,
            note="46 entries: [0,0,4,128,...] for layers 0..42, then 0,0,0 (DSpark stages)")
        ov["general.architecture"] = KV("general.architecture", T_STR, "deepseek4", "verbatim",
                                        "unsloth-UD-IQ3_XXS-0731.txt FILE general.architecture (QL-DOC)")
        facts = ff + common
        kvs = make_kvs(facts, unsloth_order(), overrides=ov,
                       absent={"deepseek4.vocab_size", "deepseek4.nextn_predict_layers"}, n_ratios=46, tok=tok)
        if label == "unsloth-UD-IQ3_XXS":
            types, prov = types_from_census(canon, ff)
        else:
            types, prov = iq2xxs_types(canon, ff)
        fl.append(dict(name=label, files=[f"{fname}-{i:05d}-of-{n_shards:05d}.gguf" for i in range(1, n_shards + 1)],
                       facts=facts, kvs=kvs, tensors=canon, types=types, prov=prov, shards=shard_facts(ff),
                       n_shards=n_shards, published={"total_bytes": int(file_facts(ff)["total_bytes"][0].split()[0])},
                       absent=["deepseek4.vocab_size (ABSENT, DS4-661/Q3KXL)",
                               "deepseek4.nextn_predict_layers (ABSENT, Q3KXL)",
                               "deepseek4.feed_forward_length (ABSENT, Q3KXL)"],
                       missing=["kv 0-7 of the general block: only general.architecture is known (5 slots filled from the I22319 pattern, inferred)",
                                "tokenizer.chat_template (0731 jinja; text not in the facts)",
                                "quantize.imatrix.dataset / entries_count / chunks_count (values not public)",
                                "the exact order of kv 24-56"],
                       tc=typecount_facts(ff, exclude_src="QL-LEG")))

    # ---- (3) antirez/ds4 q2, q4 and MTP -------------------------------------------------------
    q2 = F["ds4-q2.txt"]
    ds4_ft = KV("general.file_type", T_U32, 19, "inferred",
                "ds4-q2.txt FILE general.file_type ('not seen; 19 plausible', AZCONV)")
    ds4_ov = {"general.file_type": ds4_ft}
    kv_ds4 = make_kvs(q2, DS4_ORDER, absent={"deepseek4.swiglu_clamp_shexp"}, overrides=ds4_ov, n_ratios=44, tok=tok)
    for label, fname, facts_name, exps, pub in (
            ("ds4-q2", "DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2.gguf", "ds4-q2.txt",
             {"ffn_gate_exps": "IQ2_XXS", "ffn_up_exps": "IQ2_XXS", "ffn_down_exps": "Q2_K"}, 86720111200),
            ("ds4-q4", "DeepSeek-V4-Flash-Q4KExperts-F16HC-F16Compressor-F16Indexer-Q8Attn-Q8Shared-Q8Out-chat-v2.gguf",
             "ds4-q4.txt", {"ffn_gate_exps": "Q4_K", "ffn_up_exps": "Q4_K", "ffn_down_exps": "Q4_K"}, None)):
        types, prov = types_by_rule(canon, rule_ds4(exps))
        fl.append(dict(name=label, files=[fname], facts=F[facts_name], kvs=kv_ds4, tensors=canon, types=types,
                       prov=prov, published={"total_bytes": pub} if pub else {"card": "153.3 GiB"},
                       absent=["deepseek4.swiglu_clamp_shexp (ABSENT, AZ11/AZCONV)"],
                       missing=["general.* kv 0-6 (AZ11 excerpt starts at kv 36; filled from the I22319 7-key pattern, inferred)",
                                "kv 7-35 values other than those the ds4.c contract fixes (order counted back from kv 36)",
                                "general.file_type (not seen)", "tokenizer.chat_template (if any)",
                                "quantize.imatrix.* (only in the -imatrix files; we write the non-imatrix chat-v2 name)"],
                       tc=typecount_facts(F[facts_name])))
    # MTP: its own tensor list (ds4-mtp.txt TENSOR lines)
    mtp = F["ds4-mtp.txt"]
    mtp_t = []
    for f in mtp:
        if f.rec == "TENSOR":
            m = re.match(r"(\S+) ne=\[([\d,]+)\]", f.body)
            name = m.group(1)
            mtp_t.append((name, [int(x) for x in m.group(2).split(",")], name.split(".")[2], 0))
    types, prov = types_by_rule(mtp_t, rule_mtp)
    fl.append(dict(name="ds4-mtp", files=["DeepSeek-V4-Flash-MTP-Q4K-Q8_0-F32.gguf"], facts=mtp,
                   kvs=[KV(k.key, k.vt, k.value, "inferred",
                           "ds4-mtp.txt NOTE 'metadata keys of this file: unknown'; the ds4 main-file KV set is assumed (same toolchain): " + k.src,
                           et=k.et) for k in kv_ds4],
                   tensors=mtp_t, types=types, prov=prov, published={"card": "3.6 GiB", "CALC": 3807600108},
                   absent=[], missing=["every key: no public dump of this file exists"], tc=typecount_facts(mtp)))

    # ---- (4) nsparks FP4-FP8 native (nisparks fork), type 42 -----------------------------------
    ns = F["nsparks-fp4-fp8.txt"]
    ns_order = [k for k in UPSTREAM_ORDER[:23]] + ["general.file_type", "tokenizer.chat_template",
               "deepseek4.vocab_size", "deepseek4.attention.q_lora_rank", "deepseek4.rope.dimension_count",
               "deepseek4.attention.sliding_window", "deepseek4.rope.freq_base_swa",
               "deepseek4.leading_dense_block_count", "deepseek4.expert_feed_forward_length",
               "deepseek4.expert_count", "deepseek4.expert_shared_count", "deepseek4.expert_weights_scale",
               "deepseek4.expert_weights_norm", "deepseek4.swiglu_clamp_exp",
               # presence unknown (not in the kv 22-35 excerpt); filled as inferred
               "deepseek4.swiglu_clamp_shexp",
               "deepseek4.attention.indexer.head_count", "deepseek4.attention.indexer.key_length",
               "deepseek4.attention.indexer.top_k", "deepseek4.attention.output_group_count",
               "deepseek4.attention.output_lora_rank", "deepseek4.attention.compress_ratios",
               "deepseek4.hash_layer_count",
               "deepseek4.hyper_connection.count", "deepseek4.hyper_connection.sinkhorn_iterations",
               "deepseek4.hyper_connection.epsilon",
               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
               "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
               "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
               "general.quantization_version"]
    f_ft, f_ct, f_swa, f_ld = (find_kv_fact(ns, k) for k in (
        "general.file_type", "tokenizer.chat_template", "deepseek4.rope.freq_base_swa",
        "deepseek4.leading_dense_block_count"))
    ov = {"general.file_type": KV("general.file_type", T_U32, 41, f_ft.level, f"{f_ft.cite()} ({f_ft.src})"),
          "tokenizer.chat_template": KV("tokenizer.chat_template", T_STR, "{{ '<｜begin▁of▁sentence｜>' }}",
                                        "verbatim-truncated", f"{f_ct.cite()} ({f_ct.src})",
                                        note="only the logged prefix is public; written as the prefix"),
          "deepseek4.rope.freq_base_swa": KV("deepseek4.rope.freq_base_swa", T_F32, 160000.0, f_swa.level, f"{f_swa.cite()} ({f_swa.src})"),
          "deepseek4.leading_dense_block_count": KV("deepseek4.leading_dense_block_count", T_U32, 0, f_ld.level, f"{f_ld.cite()} ({f_ld.src})"),
          "deepseek4.swiglu_clamp_exp": KV("deepseek4.swiglu_clamp_exp", T_ARR, [10.0] * 43, "inferred",
                                           f"{find_kv_fact(ns, 'deepseek4.swiglu_clamp_exp').cite()} (I22319) key/type/length verbatim, values cut off; 10.0 from unsloth-common ARR 39",
                                           et=T_F32)}
    kvs = make_kvs(ns, ns_order, overrides=ov, n_ratios=43, tok=tok)
    for k in kvs:
        if k.key in ("deepseek4.swiglu_clamp_shexp", "deepseek4.attention.indexer.head_count",
                     "deepseek4.attention.indexer.key_length", "deepseek4.attention.indexer.top_k",
                     "deepseek4.attention.output_group_count", "deepseek4.attention.output_lora_rank",
                     "deepseek4.attention.compress_ratios", "deepseek4.hash_layer_count",
                     "deepseek4.hyper_connection.count", "deepseek4.hyper_connection.sinkhorn_iterations",
                     "deepseek4.hyper_connection.epsilon", "deepseek4.expert_gating_func"):
            k.note = "presence in this dialect unknown (nsparks-fp4-fp8.txt NOTE keys required by upstream ... presence unknown); written"
    types, prov = types_by_rule(canon, rule_nsparks)
    fl.append(dict(name="nsparks-fp4-fp8", files=["DeepSeek-V4-Flash-FP4-FP8-native.gguf"], facts=ns, kvs=kvs,
                   tensors=canon, types=types, prov=prov, published={"card": "~146 GB (GiB-like per CALC)"},
                   absent=["deepseek4.attention.compress_rope_freq_base: this dialect stores 160000 as deepseek4.rope.freq_base_swa (nsparks-fp4-fp8.txt NOTE, I22319 verbatim) -- not written"],
                   missing=["kv 0-21 (only the excerpt kv 22-35 is public; filled in upstream order, inferred)",
                            "kv after 35 (presence of compress_ratios, output_*, hyper_connection.*, hash_layer_count, gating, indexer.* unknown; written, inferred)",
                            "the full tokenizer.chat_template text",
                            "the tensor table: no public dump; type 42 counts inferred (344..489; 489 used)"],
                   tc=typecount_facts(ns)))
    return fl


def iq2xxs_types(canon, ff):
    """unsloth 0731 UD-IQ2_XXS: verbatim families from WCONTRACT where given, the UD-IQ3_XXS
    census for the rest of the non-expert tensors, MXFP4 down on blk.26/42 (inferred like IQ3)."""
    out, prov = [], {}
    for name, ne, fam, il in canon:
        if fam in ("ffn_gate_exps", "ffn_up_exps"):
            t, why = ("IQ2_S", "verbatim (WCONTRACT IQ2_S blk.26)") if il == 26 else ("IQ2_XXS", "inferred (not flagged by WCONTRACT)")
        elif fam == "ffn_down_exps":
            t, why = ("MXFP4", "inferred (layer: blk.26/42 as in UD-IQ3_XXS)") if il in (26, 42) else ("IQ3_XXS", "verbatim (WCONTRACT IQ3_XXS x41)")
        elif fam in ("token_embd", "output"):
            t, why = "Q4_K", "verbatim (WCONTRACT)"
        elif fam == "ffn_down_shexp":
            t, why = "Q6_K", "verbatim (WCONTRACT)"
        elif fam in ("ffn_gate_shexp", "ffn_up_shexp", "attn_q_a"):
            t, why = "Q6_K", "inferred (WCONTRACT: Q5_K/Q6_K mix, counts not given; Q6_K used for all)"
        else:
            t, why = rule_upstream(name, ne, fam, il)
            if t in ("Q8_0", "BF16", "F32", "I32"):
                why = "inferred (same role type as the UD-IQ3_XXS census)"
        out.append(t)
        prov[name] = why
    return out, prov


# ---------------------------------------------------------------------------------------------

def shard_split(n_tensors, shards_pub, n_shards):
    """Tensor counts per shard: from the census if given (shard 1 = metadata only), else even
    (in order, shard 1 empty as in every unsloth upload)."""
    if shards_pub and all("tensors" in s for s in shards_pub):
        return [s["tensors"] for s in sorted(shards_pub, key=lambda s: s["i"])], "census (SHARD tensors=)"
    # no per-shard counts: fill shards 2..n in order up to each published shard's byte size
    return None, "published shard byte sizes (tensors in order until each shard's size)"


def dump_spec(spec) -> str:
    """Indented JSON, but one line per tensor row (keeps the fixtures small and diffable)."""
    rows = spec.pop("tensors")
    text = json.dumps(spec, indent=1, ensure_ascii=False)
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    spec["tensors"] = rows
    return text[:-2] + ',\n "tensors": [\n' + body + "\n ]\n}\n"


def emit(fl, out_dir: Path, spec_dir: Path, dry=False):
    d = out_dir / fl["name"]
    tensors, types = fl["tensors"], fl["types"]
    spec = OrderedDict(flavour=fl["name"], generator="scripts/real_headers/make_sparse.py",
                       facts_files=sorted({f.file for f in fl["facts"]}), alignment=ALIGN)
    files = []
    if fl.get("n_shards", 1) == 1:
        rows, data = layout(tensors, types)
        hlen, total = write_sparse(d / fl["files"][0], fl["kvs"], rows, data, dry)
        files.append(OrderedDict(name=fl["files"][0], apparent_size=total, header_bytes=hlen, n_kv=len(fl["kvs"]),
                                 n_tensors=len(rows), tensor_data_bytes=data, rows=rows, kvs=fl["kvs"]))
    else:
        n = fl["n_shards"]
        counts, how = shard_split(len(tensors), fl.get("shards"), n)
        if counts is None:
            pub = sorted(fl["shards"], key=lambda s: s["i"])
            counts, i0 = [0], 0
            for s in pub[1:-1]:
                # the prefix whose data size comes closest to the published shard size
                acc, k, best = 0, i0, (abs(s["bytes"]), i0)
                while k < len(tensors):
                    acc = pad(acc + tensor_bytes(tensors[k][1], types[k]))
                    k += 1
                    best = min(best, (abs(s["bytes"] - acc), k))
                counts.append(best[1] - i0)
                i0 = best[1]
            counts.append(len(tensors) - i0)
        spec["shard_split"] = {"tensors_per_shard": counts, "how": how}
        i0 = 0
        for si, cnt in enumerate(counts):
            st, sy = tensors[i0:i0 + cnt], types[i0:i0 + cnt]
            i0 += cnt
            rows, data = layout(st, sy)
            kvs = (fl["kvs"] if si == 0 else []) + split_kvs(si, n, len(tensors))
            hlen, total = write_sparse(d / fl["files"][si], kvs, rows, data, dry)
            files.append(OrderedDict(name=fl["files"][si], apparent_size=total, header_bytes=hlen, n_kv=len(kvs),
                                     n_tensors=len(rows), tensor_data_bytes=data, rows=rows, kvs=kvs))
    for f in files:
        f["tensor_bytes"] = sum(r["n_bytes"] for r in f["rows"])
        f["file_minus_tensor_bytes"] = f["apparent_size"] - f["tensor_bytes"]
    if fl.get("shards"):
        pub = {s["i"]: s for s in fl["shards"]}
        chk = []
        for si, f in enumerate(files):
            p = pub.get(si + 1)
            if not p:
                continue
            c = OrderedDict(shard=si + 1, published_bytes=p["bytes"], generated_bytes=f["apparent_size"],
                            delta_bytes=f["apparent_size"] - p["bytes"])
            if "tensors" in p:
                c["published_tensors"], c["generated_tensors"] = p["tensors"], f["n_tensors"]
            if "tensor_bytes" in p:
                c["published_tensor_bytes"], c["generated_tensor_bytes"] = p["tensor_bytes"], f["tensor_bytes"]
                c["published_overhead"] = p["bytes"] - p["tensor_bytes"]
                c["generated_overhead"] = f["file_minus_tensor_bytes"]
            chk.append(c)
        spec["shard_check"] = chk
    all_rows = [r for f in files for r in f["rows"]]
    summ = type_summary(all_rows)
    spec["files"] = [OrderedDict((k, v) for k, v in f.items() if k not in ("rows", "kvs")) for f in files]
    spec["apparent_size_total"] = sum(f["apparent_size"] for f in files)
    spec["published"] = fl.get("published", {})
    if fl.get("shards"):
        spec["published_shards"] = fl["shards"]
    spec["tensor_count"] = len(all_rows)
    spec["element_count"] = sum(n_elements(r["ne"]) for r in all_rows)
    spec["type_counts"] = summ
    spec["type_counts_vs_facts"] = compare_typecounts(summ, fl["tc"])
    spec["metadata"] = [k.spec() for k in files[0]["kvs"]]
    if len(files) > 1:
        spec["metadata_other_shards"] = [k.spec() for k in files[1]["kvs"]]
    lv = Counter(k.level for k in files[0]["kvs"])
    spec["metadata_levels"] = dict(lv)
    spec["keys_absent_by_fact"] = fl["absent"]
    spec["keys_missing_unknown"] = fl["missing"]
    # tensor table: name, type, ne, shard, offset; provenance grouped
    tt = []
    for si, f in enumerate(files):
        for r in f["rows"]:
            tt.append([r["name"], r["type"], r["ne"], si + 1, r["offset"]])
    spec["tensors"] = tt
    pv = Counter()
    for name, ne, fam, il in tensors:
        pv[(fam, fl["prov"][name])] += 1
    spec["tensor_type_provenance"] = [{"family": fam, "why": why, "count": c} for (fam, why), c in sorted(pv.items())]
    spec_dir.mkdir(parents=True, exist_ok=True)
    # gzip (fixture size budget); mtime 0 and no name in the header, so the bytes are reproducible
    with open(spec_dir / f"{fl['name']}.json.gz", "wb") as f, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=f, mtime=0) as gz:
        gz.write(dump_spec(spec).encode("utf-8"))
    return spec


def synthetic(out_dir: Path, n_layer=3, tok=None, dry=False):
    """A 'deepseek4' header with Flash-size layers but only n_layer blocks (MXFP4 experts, Q8_0
    dense, like flavour 1) and no tokenizer arrays (deepseek4.vocab_size instead)."""
    facts_dir = DEFAULT_FACTS
    canon = census_order(canonical_tensors(parse_facts(facts_dir / "shapes.txt"), n_layer))
    types, _ = types_by_rule(canon, rule_upstream)
    order = [k for k in UPSTREAM_ORDER if not k.startswith("tokenizer.ggml.t") and not k.startswith("tokenizer.ggml.m")
             and k != "deepseek4.nextn_predict_layers"]
    kvs = []
    for k in order:
        vt, v, src = MODEL[k]
        if k == "deepseek4.block_count":
            v = n_layer
        if k == "deepseek4.attention.compress_ratios":
            kvs.append(KV(k, T_ARR, [ratio(i) for i in range(n_layer)], "synthetic", src, et=T_I32))
        elif k in ("deepseek4.swiglu_clamp_exp", "deepseek4.swiglu_clamp_shexp"):
            kvs.append(KV(k, T_ARR, [10.0] * n_layer, "synthetic", src, et=T_F32))
        else:
            kvs.append(KV(k, vt, v, "synthetic", src))
    rows, data = layout(canon, types)
    p = out_dir / "synthetic" / f"deepseek4-flash-{n_layer}layer-mxfp4.gguf"
    hlen, total = write_sparse(p, kvs, rows, data, dry)
    return p, total, len(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facts", type=Path, default=DEFAULT_FACTS)
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC)
    ap.add_argument("--only", action="append", help="flavour name(s) to build")
    ap.add_argument("--synthetic-layers", type=int, default=0,
                    help="also write a synthetic deepseek4 file with this many Flash-size blocks")
    ap.add_argument("--dry-run", action="store_true", help="compute layouts and specs, write no GGUF")
    a = ap.parse_args(argv)
    tok = Tokenizer(a.tokenizer)
    for fl in build_flavours(a.facts, tok):
        if a.only and fl["name"] not in a.only:
            continue
        spec = emit(fl, a.out, a.spec_dir, a.dry_run)
        print(f"{fl['name']}: {len(spec['files'])} file(s), {spec['tensor_count']} tensors, "
              f"apparent {spec['apparent_size_total']:,} B, types "
              + " ".join(f"{t}:{v['count']}" for t, v in spec["type_counts"].items()))
        for f in spec["files"]:
            print(f"  {a.out / fl['name'] / f['name']}  {f['apparent_size']:,} B  header {f['header_bytes']:,} B  "
                  f"kv {f['n_kv']}  tensors {f['n_tensors']}")
    if a.synthetic_layers:
        p, total, n = synthetic(a.out, a.synthetic_layers, tok, a.dry_run)
        print(f"synthetic: {p}  {total:,} B  {n} tensors")


if __name__ == "__main__":
    sys.exit(main())
