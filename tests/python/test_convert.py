"""dsv4-convert against upstream llama.cpp's own converter (convert_hf_to_gguf.py), whose output on
the real-vocabulary tiny-quant checkpoint is recorded in tests/fixtures/upstream-converter/
(per-tensor sha256 of the stored bytes and of the gguf-package dequantized float32 values).

CI converts the committed toy-vocabulary tiny-quant checkpoint: it holds the same weights for every
tensor whose shape does not involve the vocabulary (tests/fixtures/upstream-converter/
naming-vs-fixture.txt), so those must be byte-identical to upstream's. The vocabulary-sized
tensors are compared by scripts/peer/convert-compare.sh on the real-vocabulary checkpoint."""
import hashlib
import json
import pathlib
import subprocess

import gguf
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
UPSTREAM = json.loads((ROOT / "tests/fixtures/upstream-converter/tiny-quant-realvocab.tensors.json").read_text())
VOCAB_SIZED = {"token_embd.weight", "output.weight"}


def f32_digest(t):
    v = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
    return hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def converted(bin_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "tiny-quant.gguf"
    p = subprocess.run([str(bin_dir / "dsv4-convert"), str(ROOT / "tests/fixtures/tiny-quant"), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return gguf.GGUFReader(out)


def test_same_tensor_table_as_upstream(converted):
    ours = {t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in converted.tensors}
    theirs = {t["name"]: (t["type"], t["ne"]) for t in UPSTREAM["tensors"]}
    assert set(ours) == set(theirs)
    for name, (typ, ne) in theirs.items():
        assert ours[name][0] == typ, name
        if name not in VOCAB_SIZED and "tid2eid" not in name:
            assert ours[name][1] == ne, name


def test_values_byte_identical_to_upstream(converted):
    by_name = {t.name: t for t in converted.tensors}
    checked = 0
    for u in UPSTREAM["tensors"]:
        if u["name"] in VOCAB_SIZED or "tid2eid" in u["name"]:
            continue
        t = by_name[u["name"]]
        assert hashlib.sha256(bytes(t.data.tobytes())).hexdigest() == u["sha256_raw"], u["name"]
        assert f32_digest(t) == u["sha256_f32"], u["name"]
        checked += 1
    assert checked >= 100


def read_safetensors(path):
    b = path.read_bytes()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[name] = (v["dtype"], v["shape"], data[s:e])
    return out


def test_keep_fp8_is_lossless(bin_dir, tmp_path):
    """--keep-fp8: every dense FP8 tensor dequantizes to exactly e4m3(q) x 2^(scale-127) of the
    safetensors. Oracle: ml_dtypes' e4m3fn table (tests/fixtures/dtypes) and a numpy decoding of
    F8_E4M3_B128 blocks (the gguf package does not know type 42)."""
    src = ROOT / "tests/fixtures/tiny-quant"
    out = tmp_path / "fp8.gguf"
    p = subprocess.run([str(bin_dir / "dsv4-convert"), "--keep-fp8", str(src), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    info = subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--json", str(out)], capture_output=True,
                          text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    j = json.loads(info.stdout)
    assert j["metadata"]["general.file_type"] == 41
    assert j["metadata"]["dsv4.keep_fp8"] is True
    e4m3 = np.load(ROOT / "tests/fixtures/dtypes/e4m3fn_decode.npy")
    st = read_safetensors(src / "model.safetensors")
    raw = out.read_bytes()
    names = {"blk.%s.%s" % (k.split(".")[1], v): k for k in st
             for suffix, v in [("attn.wq_a.weight", "attn_q_a.weight"), ("attn.wo_a.weight", "attn_output_a.weight"),
                               ("ffn.shared_experts.w2.weight", "ffn_down_shexp.weight")]
             if k.startswith("layers.") and k.endswith(suffix)}
    assert len(names) >= 8
    checked = {"f8_e4m3_b128": 0, "bf16": 0}
    for t in j["tensors"]:
        if t["name"] not in names:
            continue
        dtype, shape, q = st[names[t["name"]]]
        assert dtype == "F8_E4M3"
        _, sshape, sc = st[names[t["name"]][: -len("weight")] + "scale"]
        qv = e4m3[np.frombuffer(q, np.uint8)].reshape(shape)
        s = np.frombuffer(sc, np.uint8).reshape(sshape).astype(np.float64) - 127
        rows = np.arange(shape[0]) // 128
        cols = np.arange(shape[1]) // 128
        exact = qv * np.exp2(s[rows][:, cols])
        blob = raw[j["data_offset"] + t["offset"]: j["data_offset"] + t["offset"] + t["n_bytes"]]
        if t["type"] == "f8_e4m3_b128":
            blocks = np.frombuffer(blob, np.uint8).reshape(-1, 129)
            ours = (e4m3[blocks[:, 1:]] * np.exp2(blocks[:, :1].astype(np.float64) - 127)).reshape(shape)
        else:
            assert t["type"] == "bf16", t
            ours = (np.frombuffer(blob, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        assert np.array_equal(ours, exact), t["name"]
        checked[t["type"]] += 1
    assert checked["f8_e4m3_b128"] > 0 and checked["bf16"] > 0, checked
