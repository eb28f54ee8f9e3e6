"""dsv4-gguf-info against the `gguf` package (llama.cpp's own Python reader and constants): our
reader must see exactly the metadata and tensor table that gguf.GGUFReader sees, on every
reference fixture, and our type table must equal gguf's GGML_QUANT_SIZES."""
import json
import math
import subprocess

import gguf
import numpy as np
import pytest

FIXTURE_CONFIGS = ["tiny", "tiny-clamp", "tiny-quant", "tiny-pro"]


def run_info(bin_dir, *args, check=True):
    p = subprocess.run([str(bin_dir / "dsv4-gguf-info"), *map(str, args)], capture_output=True,
                       text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_type_table_matches_gguf_package(bin_dir):
    ours = json.loads(run_info(bin_dir, "--types").stdout)
    assert len(ours) >= 30
    for t in ours:
        qt = gguf.GGMLQuantizationType(t["id"])
        assert qt.name.lower() == t["name"].lower(), (t, qt)
        assert gguf.GGML_QUANT_SIZES[qt] == (t["block_size"], t["type_size"]), t
    # every type gguf knows is either in our table or deliberately left to the quant layer
    ours_ids = {t["id"] for t in ours}
    contested = {42}  # Q2_0 upstream vs F8_E4M3_B128 in the nsparks fork (decided per file)
    for qt in gguf.GGMLQuantizationType:
        assert qt.value in ours_ids or qt.value in contested, qt


def reader_value(field):
    """The value of a GGUFReader field in the JSON shape dsv4-gguf-info --json uses."""
    types = field.types
    if types[0] == gguf.GGUFValueType.ARRAY:
        if types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    v = field.parts[field.data[0]].tolist()[0]
    if types[0] == gguf.GGUFValueType.BOOL:
        return bool(v)
    return v


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or float(np.float32(a)) == float(np.float32(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("config", FIXTURE_CONFIGS)
def test_fixture_matches_gguf_reader(bin_dir, fixtures_dir, config):
    path = fixtures_dir / config / "model.gguf"
    assert path.exists(), f"missing fixture {path}"
    ours = json.loads(run_info(bin_dir, "--json", path).stdout)
    ref = gguf.GGUFReader(path)
    ref_fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert set(ours["metadata"]) == set(ref_fields)
    for key, field in ref_fields.items():
        assert same(ours["metadata"][key], reader_value(field)), key
    assert ours["data_offset"] == ref.data_offset
    assert len(ours["tensors"]) == len(ref.tensors)
    for t_ours, t_ref in zip(ours["tensors"], ref.tensors):
        assert t_ours["name"] == t_ref.name
        assert t_ours["type_id"] == int(t_ref.tensor_type)
        assert t_ours["ne"] == [int(x) for x in t_ref.shape]
        assert t_ours["n_bytes"] == int(t_ref.n_bytes)
        assert ref.data_offset + t_ours["offset"] == int(t_ref.data_offset)


def test_summary_names_the_layer_schedule(bin_dir, fixtures_dir):
    cfg = json.loads((fixtures_dir / "tiny" / "config.json").read_text())
    out = run_info(bin_dir, fixtures_dir / "tiny" / "model.gguf").stdout
    kinds = {0: "SWA", 4: "CSA", 128: "HCA"}
    n = cfg["num_hidden_layers"]
    assert "layers: " + " ".join(kinds[r] for r in cfg["compress_ratios"][:n]) + " " in out
    assert f"+{len(cfg['compress_ratios']) - n} compress_ratios entries" in out
    assert f"n_embd {cfg['hidden_size']}" in out
    assert f"n_vocab {cfg['vocab_size']}" in out


def test_invalid_file_is_a_clear_error(bin_dir, tmp_path, fixtures_dir):
    good = (fixtures_dir / "tiny" / "model.gguf").read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(good[: len(good) // 2])
    p = run_info(bin_dir, bad, check=False)
    assert p.returncode == 1
    assert "exceeds the data section" in p.stderr or "truncated" in p.stderr
    assert str(bad) in p.stderr
    # header-only mode accepts the same bytes (the data section is not required)
    assert run_info(bin_dir, "--header-only", "--no-tensors", bad, check=False).returncode == 0


def test_verify_weights_finds_nan(bin_dir, fixtures_dir, tmp_path):
    """reliability.md G16: --verify-weights dequantizes every tensor and names the one holding a
    NaN (injected into one routed expert of the tiny fixture); without the flag the file validates."""
    src = fixtures_dir / "tiny" / "model.gguf"
    j = json.loads(run_info(bin_dir, "--json", src).stdout)
    t = next(t for t in j["tensors"] if t["name"] == "blk.2.ffn_up_exps.weight")
    b = bytearray(src.read_bytes())
    at = j["data_offset"] + t["offset"] + 4 * 1000  # element 1000 (f32)
    b[at:at + 4] = np.array([np.nan], dtype="<f4").tobytes()
    bad = tmp_path / "nan.gguf"
    bad.write_bytes(bytes(b))
    assert run_info(bin_dir, "--validate", bad).returncode == 0
    p = run_info(bin_dir, "--validate", "--verify-weights", bad, check=False)
    assert p.returncode == 1
    assert "blk.2.ffn_up_exps.weight: non-finite value nan at element 1000" in p.stderr, p.stderr
    assert run_info(bin_dir, "--validate", "--verify-weights", src).returncode == 0
