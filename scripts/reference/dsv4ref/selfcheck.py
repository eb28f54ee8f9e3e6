"""Consistency checks of the generated fixtures (run by generate.sh after finalize).

* model.gguf dequantises (gguf.quants.dequantize) to exactly the effective values of model.safetensors
  (FP8 x E8M0, FP4 x E8M0, BF16, F32; tid2eid I64 -> I32), tensor by tensor, experts stacked;
* safetensors dtypes are the official ones;
* simon/kv_raw rows: nope part FP8-representable per 64 with the §9.2 power-of-two scale;
  simon/kv_comp rows likewise; simon/indexer_kv rows FP4-representable per 32 with the §9.3 scale;
* token files are int32 and logits float32 with the manifest's shapes.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import ml_dtypes
import numpy as np

from . import configs, gguf_out, weights


def _pow2_scale(amax, qmax, floor):
    a = np.maximum(amax, floor).astype(np.float32)
    e = np.ceil(np.log2(a.astype(np.float64) / qmax))
    return np.exp2(e).astype(np.float32)


def check_fp8_rows(x, nope):
    blk = x[:, :nope].reshape(x.shape[0], -1, 64)
    s = _pow2_scale(np.abs(blk).max(-1, keepdims=True), 448.0, 1e-4)
    y = blk / s
    return bool(np.array_equal(y.astype(ml_dtypes.float8_e4m3fn).astype(np.float32), y))


def check_fp4_rows(x):
    blk = x.reshape(x.shape[0], -1, 32)
    s = _pow2_scale(np.abs(blk).max(-1, keepdims=True), 6.0, 6.0 * 2.0 ** -126)
    y = blk / s
    return bool(np.array_equal(y.astype(ml_dtypes.float4_e2m1fn).astype(np.float32), y))


def check_config(root: pathlib.Path, name: str) -> list[str]:
    import gguf
    from safetensors import safe_open

    d = root / name
    errs = []
    a = configs.get(name)
    ts = weights.make_weights(a)
    vals = weights.values_dict(ts)
    # safetensors dtypes
    want = {"fp8": "F8_E4M3", "fp4": "I8", "bf16": "BF16", "f32": "F32", "i64": "I64"}
    with safe_open(str(d / "model.safetensors"), "np" if a["dtype"] != "fp8" else "pt") as f:
        keys = set(f.keys())
        for t in ts:
            if f.get_slice(t.name).get_dtype() != want[t.kind]:
                errs.append(f"{name}: {t.name} dtype {f.get_slice(t.name).get_dtype()} != {want[t.kind]}")
            if t.kind in ("fp8", "fp4"):
                sc = t.name[:-len('.weight')] + ".scale"
                if sc not in keys or f.get_slice(sc).get_dtype() != "F8_E8M0":
                    errs.append(f"{name}: missing/odd {sc}")
    # gguf vs effective values
    r = gguf.GGUFReader(str(d / "model.gguf"))
    gt = {t.name: t for t in r.tensors}
    n_checked = 0
    for t in ts:
        g = gguf_out._gguf_name(t.name)
        if g is None:
            continue
        if gt[g].tensor_type == gguf.GGMLQuantizationType.I32:
            arr = np.asarray(gt[g].data).astype(np.int64).reshape(t.value.shape)
        else:
            arr = gguf.quants.dequantize(gt[g].data, gt[g].tensor_type).reshape(t.value.shape)
        if not np.array_equal(arr.astype(t.value.dtype), t.value):
            errs.append(f"{name}: {g} != {t.name}")
        n_checked += 1
    E = a["n_routed_experts"]
    for li in range(a["n_layers"]):
        for wn, gn in (("w1", "ffn_gate_exps"), ("w3", "ffn_up_exps"), ("w2", "ffn_down_exps")):
            ref = np.stack([vals[f"layers.{li}.ffn.experts.{e}.{wn}.weight"] for e in range(E)])
            t = gt[f"blk.{li}.{gn}.weight"]
            arr = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape)
            if not np.array_equal(arr, ref):
                errs.append(f"{name}: blk.{li}.{gn} != stacked experts")
            n_checked += 1
    # dumps
    nope = a["head_dim"] - a["rope_head_dim"]
    for p in sorted((d / "simon").glob("kv_raw.L*.npy")) + sorted((d / "simon").glob("kv_comp.L*.npy")):
        if not check_fp8_rows(np.load(p), nope):
            errs.append(f"{name}: {p.name} nope part not FP8-representable")
    for p in sorted((d / "simon").glob("indexer_kv.L*.npy")):
        if not check_fp4_rows(np.load(p)):
            errs.append(f"{name}: {p.name} not FP4-representable")
    m = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    for rel, info in m["files"].items():
        if rel.endswith(".npy"):
            x = np.load(d / rel, mmap_mode="r")
            if list(x.shape) != info["shape"] or str(x.dtype) != info["dtype"]:
                errs.append(f"{name}: {rel} shape/dtype differs from manifest")
    print(f"{name}: {n_checked} GGUF tensors equal to the safetensors values; {len(errs)} problems")
    return errs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", default=",".join(configs.CONFIGS))
    args = ap.parse_args(argv)
    root = pathlib.Path(args.out)
    errs = []
    for n in args.configs.split(","):
        if (root / n / "manifest.json").exists():
            errs += check_config(root, n)
    for e in errs:
        print("FAIL", e)
    if errs:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
