"""dsv4-quantize on an F32 mkmodel file: routed experts and dense projections get the requested
types, overrides win, everything else is copied; Q8_0 output is byte-identical to the gguf
package's quantizer on the same floats; Q4_K/Q2_K stay within the error bounds of
tests/quant/quant_test.cpp (relative RMSE 0.12 / 0.45 on Gaussian weights)."""
import subprocess

import gguf
import numpy as np
import pytest


@pytest.fixture(scope="module")
def f32_model(bin_dir, fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "f32.gguf"
    subprocess.run([str(bin_dir / "dsv4-mkmodel"), "-o", str(out), "--tokenizer", str(fixtures_dir / "tokenizer.json"),
                    "--preset", "tiny", "--mix", "f32", "--n-embd", "256", "--n-ff-exp", "256"],
                   check=True, capture_output=True, timeout=300)
    return out


def quantize(bin_dir, src, dst, *args):
    p = subprocess.run([str(bin_dir / "dsv4-quantize"), str(src), str(dst), *args], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    v = subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--validate", str(dst)], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    return gguf.GGUFReader(dst)


def tensors(path_or_reader):
    r = path_or_reader if isinstance(path_or_reader, gguf.GGUFReader) else gguf.GGUFReader(path_or_reader)
    return {t.name: t for t in r.tensors}


@pytest.mark.parametrize("experts,bound", [("q4_K", 0.12), ("q2_K", 0.45)])
def test_experts_and_dense(bin_dir, f32_model, tmp_path, experts, bound):
    src = tensors(f32_model)
    out = tensors(quantize(bin_dir, f32_model, tmp_path / "o.gguf", "--experts", experts,
                           "--override", r"blk\.0\.ffn_down_exps\.weight=q8_0"))
    assert out["blk.1.ffn_gate_exps.weight"].tensor_type.name == experts.upper()
    assert out["blk.0.ffn_down_exps.weight"].tensor_type.name == "Q8_0"  # override
    assert out["blk.1.attn_q_b.weight"].tensor_type.name == "Q8_0"       # dense projection
    for name in ("token_embd.weight", "blk.1.ffn_gate_inp.weight", "blk.1.hc_attn_fn.weight",
                 "blk.0.ffn_gate_tid2eid.weight", "output_norm.weight"):
        assert out[name].tensor_type == src[name].tensor_type, name
        assert bytes(out[name].data.tobytes()) == bytes(src[name].data.tobytes()), name
    # Q8_0: byte-identical to gguf-py's quantizer on the same floats
    for name in ("blk.1.attn_q_b.weight", "blk.0.ffn_down_exps.weight"):
        want = gguf.quants.quantize(np.asarray(src[name].data, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
        assert bytes(out[name].data.tobytes()) == want.tobytes(), name
    # K-quant: bounded error
    x = np.asarray(src["blk.1.ffn_up_exps.weight"].data, dtype=np.float64).ravel()
    t = out["blk.1.ffn_up_exps.weight"]
    y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
    assert np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2)) < bound


def test_bad_arguments(bin_dir, f32_model, tmp_path):
    for args, msg in ((["--experts", "iq2_xxs"], "not a type dsv4-quantize can write"),
                      (["--override", "([=q8_0"], "regex"),
                      (["--override", "noequals"], "REGEX=TYPE")):
        p = subprocess.run([str(bin_dir / "dsv4-quantize"), str(f32_model), str(tmp_path / "x.gguf"), *args],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
