"""dsv4-mkmodel: synthetic DeepSeek-V4 GGUFs are valid deepseek4 files (our validator), readable by
the gguf package with the tokenizer's vocabulary by id, deterministic for a seed, and honour the
per-mix tensor types. (Loading in upstream llama.cpp is checked by scripts/peer, not in CI.)"""
import hashlib
import json
import subprocess

import gguf
import numpy as np
import pytest

MIXES = {
    # mix: {tensor name: expected ggml type name}
    "f32": {"blk.0.ffn_gate_exps.weight": "F32", "blk.0.attn_q_a.weight": "F32"},
    "upstream": {"blk.0.ffn_gate_exps.weight": "MXFP4", "blk.0.attn_q_a.weight": "Q8_0",
                 "token_embd.weight": "BF16", "blk.0.hc_attn_fn.weight": "F32"},
    "ds4-q2": {"blk.0.ffn_gate_exps.weight": "IQ2_XXS", "blk.0.ffn_down_exps.weight": "Q2_K",
               "blk.0.attn_q_a.weight": "Q8_0", "token_embd.weight": "F16"},
    "unsloth-ud": {"blk.0.ffn_gate_exps.weight": "IQ3_XXS", "blk.1.ffn_gate_exps.weight": "IQ2_XS",
                   "blk.3.ffn_down_exps.weight": "MXFP4", "token_embd.weight": "Q6_K",
                   "blk.0.ffn_down_shexp.weight": "Q6_K", "blk.0.attn_q_a.weight": "Q8_0",
                   "blk.0.ffn_gate_inp.weight": "BF16"},
}
WIDE = {"ds4-q2", "unsloth-ud", "nsparks"}  # 256-element blocks need 256-wide rows


def mkmodel(bin_dir, out, tokenizer, mix, seed=7):
    args = [str(bin_dir / "dsv4-mkmodel"), "-o", str(out), "--tokenizer", str(tokenizer),
            "--preset", "tiny", "--mix", mix, "--seed", str(seed)]
    if mix in WIDE:
        args += ["--n-embd", "256", "--n-ff-exp", "256"]
    subprocess.run(args, check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_mkmodel_mix(bin_dir, fixtures_dir, tmp_path, mix):
    tok = fixtures_dir / "tokenizer.json"
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    mkmodel(bin_dir, a, tok, mix)
    mkmodel(bin_dir, b, tok, mix)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    p = subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--validate", str(a)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = gguf.GGUFReader(a)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    for name, want in MIXES[mix].items():
        assert types[name] == want, (name, types[name])
    # vocabulary by id, special tokens found by string
    tj = json.loads(tok.read_text())
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode() for i in f.data]
    for s, i in tj["model"]["vocab"].items():
        assert tokens[i] == s
    for at in tj["added_tokens"]:
        assert tokens[at["id"]] == at["content"]
    bos = r.fields["tokenizer.ggml.bos_token_id"].parts[-1][0]
    assert tokens[bos] == "<｜begin▁of▁sentence｜>"
    # hash-routing table: distinct experts in every row
    tid = next(t for t in r.tensors if t.name == "blk.0.ffn_gate_tid2eid.weight")
    rows = np.asarray(tid.data).reshape(-1, int(tid.shape[0]))
    assert all(len(set(row)) == len(row) for row in rows)
    n_expert = int(r.fields["deepseek4.expert_count"].parts[-1][0])
    assert rows.min() >= 0 and rows.max() < n_expert


def test_mkmodel_nsparks_mix(bin_dir, fixtures_dir, tmp_path):
    """F8_E4M3_B128 projections (type 42) with file type 41: our reader resolves id 42 from the file
    (the gguf package cannot read it); dequantized values have the requested scale."""
    out = tmp_path / "n.gguf"
    mkmodel(bin_dir, out, fixtures_dir / "tokenizer.json", "nsparks")
    p = subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--validate", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    j = json.loads(subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--json", str(out)], capture_output=True,
                                  text=True, check=True).stdout)
    types = {t["name"]: t["type"] for t in j["tensors"]}
    assert j["metadata"]["general.file_type"] == 41
    assert types["blk.0.attn_q_a.weight"] == "f8_e4m3_b128"
    assert types["blk.0.ffn_gate_exps.weight"] == "mxfp4"


def test_mkmodel_rejects_impossible_mix(bin_dir, fixtures_dir, tmp_path):
    p = subprocess.run([str(bin_dir / "dsv4-mkmodel"), "-o", str(tmp_path / "x.gguf"), "--tokenizer",
                        str(fixtures_dir / "tokenizer.json"), "--preset", "tiny", "--mix", "ds4-q2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "not a multiple of its block size" in p.stderr
