#!/usr/bin/env python3
"""Outside-oracle agreement: official DeepSeek-V4 inference code (run_official.py) and PyPI
nano-deepseek-v4 (../nano/run_nano.py) against the transformers reference fixtures written by
dsv4ref (tests/fixtures/<config>/{simon,simoff,simact}/*.npy), and the MTP fixtures.

    cd scripts/reference && .venv/bin/python official/compare.py [--configs tiny,tiny-quant] [--no-long]

Step 1 runs the outside references and caches their outputs in build/official-out/<config>/ (not
committed). Step 2 compares and writes build/official-out/agreement.json, which
official/report.py turns into tests/fixtures/agreement-official.md. Writes
tests/fixtures/tiny/mtp_{tokens,logits,trunk_states}.npy (MTP: official code only).
If a transformers fixture file is missing, the same transformers run is recomputed here with the
fixture generator's own library (dsv4ref.hfmodel + dsv4ref.sim) into build/official-out/<config>/hf/
and the table says so.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.abspath(os.path.join(HERE, ".."))
REPO = os.path.abspath(os.path.join(REF, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REF, "nano"))
sys.path.insert(0, REF)
import cpu_kernels  # noqa: E402
import run_official as ro  # noqa: E402

FIX = os.path.join(REPO, "tests", "fixtures")
OUT = os.path.join(REPO, "build", "official-out")
P_MAIN, P_SHORT, P_LONG, STRIDE = 200, 3, 7680, 16


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def nmse_rows(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return ((a - b) ** 2).sum(-1) / np.maximum((b ** 2).sum(-1), 1e-300)


def cached(path, fn):
    if os.path.exists(path):
        return np.load(path)
    arr = fn()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, arr)
    return arr


def set_sim(kv, idx, act):
    cpu_kernels.SIM.update(kv_fp8=kv, indexer_fp4=idx, act_fp8=act)


def run_outside(cfg, ck, seqs, long_ok, out):
    """Run official-code variants and nano; cache logits. Returns dict name -> {run: array}."""
    res = {}
    has_long = "long" in seqs and long_ok
    maxlen = (len(seqs["long"]) if has_long else len(seqs["main"])) + 16
    # name, revision, (kv_fp8, indexer_fp4, act_fp8), indexer tie-break
    variants = [("official", "current", (True, True, True), "topk"),
                ("official_stable", "current", (True, True, True), "stable"),
                ("official_nosim", "current", (False, False, False), "stable"),
                ("official_initial", "initial", (True, True, True), "stable")]
    is_quant = json.load(open(os.path.join(ck, "config.json"))).get("quantization_config") is not None
    if is_quant:
        variants.append(("official_noact", "current", (True, True, False), "stable"))
    variants.append(("official_bf16", "current", (True, True, True), "stable"))
    PRIMARY = "official_stable"
    for name, rev, sim, tb in variants:
        d = os.path.join(out, name)
        need = [f for f in ["prefill_main", "decode_main", "prefill_short", "decode_short"]
                if not os.path.exists(os.path.join(d, f + ".npy"))]
        if name == PRIMARY and has_long:
            need += [f for f in ["prefill_long", "decode_long"] if not os.path.exists(os.path.join(d, f + ".npy"))]
        if name == PRIMARY:
            need += [f for f in ["mtp_logits"] if not os.path.exists(os.path.join(d, f + ".npy"))]
        r = {}
        om = None
        if need:
            log(cfg, name, "running", need)
            set_sim(*sim)
            om = ro.OfficialModel(ck, rev, max_seq_len=maxlen, tiebreak=tb,
                                  dtype="bf16" if name.endswith("_bf16") else "fp32")
        main, short = seqs["main"], seqs["short"]

        def pm():
            lg, h = om.prefill(main)
            np.save(os.path.join(d, "trunk_main.npy"), h.float().numpy())
            for li, s in om.selections.items():
                np.save(os.path.join(d, f"indexer_topk.L{li}.npy"), s[0].astype(np.int32))
            return lg
        os.makedirs(d, exist_ok=True)
        r["prefill_main"] = cached(os.path.join(d, "prefill_main.npy"), pm)
        r["decode_main"] = cached(os.path.join(d, "decode_main.npy"),
                                  lambda: om.prefill_decode(main, P_MAIN)[P_MAIN - 1:])
        r["prefill_short"] = cached(os.path.join(d, "prefill_short.npy"), lambda: om.prefill(short)[0])
        r["decode_short"] = cached(os.path.join(d, "decode_short.npy"),
                                   lambda: om.prefill_decode(short, P_SHORT)[P_SHORT - 1:])
        if name == PRIMARY:
            def mtp():
                # MTP (dsv4-architecture.md §10, §15.1 item 4): trunk HC states X[t] at t = 0..T-2 of a
                # full prefill of tokens/main, with tokens t+1 = 1..T-1; row t predicts token t+2.
                om.prefill(main)
                h = om.hooked[0].clone()
                lg_pre = om.mtp(h[:-1], main[1:], "prefill")
                lg_dec = om.mtp(h[:-1], main[1:], "decode")
                np.save(os.path.join(d, "mtp_logits_decode.npy"), lg_dec)
                np.save(os.path.join(d, "mtp_trunk_states.npy"), h[:-1].numpy())
                return lg_pre
            r["mtp_logits"] = cached(os.path.join(d, "mtp_logits.npy"), mtp)
            r["mtp_logits_decode"] = np.load(os.path.join(d, "mtp_logits_decode.npy"))
            if has_long:
                L = seqs["long"]
                keep = np.arange(STRIDE - 1, len(L), STRIDE)
                r["prefill_long"] = cached(os.path.join(d, "prefill_long.npy"), lambda: om.prefill(L)[0][keep])
                keepd = keep[keep >= P_LONG - 1]
                r["decode_long"] = cached(os.path.join(d, "decode_long.npy"),
                                          lambda: om.prefill_decode(L, P_LONG, keep=set(keepd.tolist()))[keepd])
        for li in range(8):
            p = os.path.join(d, f"indexer_topk.L{li}.npy")
            if os.path.exists(p):
                r[f"indexer_topk.L{li}"] = np.load(p)
        res[name] = r
        del om
    set_sim(True, True, True)
    # nano-deepseek-v4
    d = os.path.join(out, "nano")
    r = {}
    nm = None
    try:
        import run_nano

        def get_nm():
            nonlocal nm
            if nm is None:
                nm = run_nano.NanoModel(ck)
                json.dump({"missing": nm.missing, "unexpected": nm.unexpected},
                          open(os.path.join(d, "load_report.json"), "w"), indent=1)
            return nm
        os.makedirs(d, exist_ok=True)
        r["prefill_main"] = cached(os.path.join(d, "prefill_main.npy"), lambda: get_nm().prefill(seqs["main"]))
        r["decode_main"] = cached(os.path.join(d, "decode_main.npy"),
                                  lambda: get_nm().prefill_decode(seqs["main"], P_MAIN)[P_MAIN - 1:])
        r["prefill_short"] = cached(os.path.join(d, "prefill_short.npy"), lambda: get_nm().prefill(seqs["short"]))
        r["decode_short"] = cached(os.path.join(d, "decode_short.npy"),
                                   lambda: get_nm().prefill_decode(seqs["short"], P_SHORT)[P_SHORT - 1:])
    except Exception as e:  # record, do not abort the official comparison
        log(cfg, "nano failed:", repr(e))
        r["error"] = repr(e)
    res["nano"] = r
    return res


def hf_reference(cfg, fixdir, out, seqs, modes):
    """transformers logits: from the fixture files; missing ones recomputed with dsv4ref."""
    res, src = {}, {}
    missing = []
    for m in modes:
        res[m] = {}
        for f in ["prefill_main", "decode_main", "prefill_short", "decode_short", "prefill_long", "decode_long"]:
            p = os.path.join(fixdir, m, f + ".npy")
            if os.path.exists(p):
                res[m][f] = np.load(p)
                src[f"{m}/{f}"] = "fixture"
            elif f in ("prefill_main", "decode_main", "prefill_short", "decode_short"):
                missing.append((m, f))
        for li in range(8):
            p = os.path.join(fixdir, m, f"indexer_topk.L{li}.npy")
            if os.path.exists(p):
                res[m][f"indexer_topk.L{li}"] = np.load(p)
        p = os.path.join(fixdir, m, "indexer_scores.L1.npy")
    if missing:
        from dsv4ref import configs, fixtures, hfmodel, sim, weights
        a = configs.get(cfg)
        threads = torch.get_num_threads()
        fixtures.set_determinism()
        ts = weights.make_weights(a)
        model, _ = hfmodel.build_model(a, weights.values_dict(ts))
        for m, f in missing:
            p = os.path.join(out, "hf", m, f + ".npy")
            if not os.path.exists(p):
                log(cfg, "recomputing transformers", m, f)
                hs = sim.install(model, **fixtures.SIM_MODES[m])
                if hasattr(sim, "install_tiebreak"):   # the fixtures' tie rule (ties -> lower row index)
                    hs.extend(sim.install_tiebreak(model))
                rec = sim.Recorder(model, intermediates=False, indexer=True, kv=False)
                seq = seqs["main" if "main" in f else "short"]
                if f.startswith("prefill"):
                    arr = fixtures.run_prefill(model, seq).numpy()
                    if f == "prefill_main":
                        for k, v in rec.data.items():
                            if k.endswith(".indexer_topk"):
                                li = int(k.split(".")[0][1:])
                                os.makedirs(os.path.dirname(p), exist_ok=True)
                                np.save(os.path.join(out, "hf", m, f"indexer_topk.L{li}.npy"),
                                        v[0][0].numpy().astype(np.int32))
                else:
                    arr = fixtures.run_decode(model, seq, P_MAIN if "main" in f else P_SHORT)[0].numpy()
                rec.remove()
                hs.remove()
                os.makedirs(os.path.dirname(p), exist_ok=True)
                np.save(p, arr)
            res[m][f] = np.load(p)
            src[f"{m}/{f}"] = "recomputed (dsv4ref library, fixture file absent)"
            for li in range(8):
                q = os.path.join(out, "hf", m, f"indexer_topk.L{li}.npy")
                if os.path.exists(q) and f"indexer_topk.L{li}" not in res[m]:
                    res[m][f"indexer_topk.L{li}"] = np.load(q)
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    return res, src


RANGES = {
    "main": [(0, 16), (16, 128), (128, 200), (200, 256), (256, 300)],
    "short": [(0, 3), (3, 33)],
    "long": [(0, 1024), (1024, 4096), (4096, 7680), (7680, 8192)],
}


def positions(run, seqs):
    T = {"main": len(seqs["main"]), "short": len(seqs["short"]), "long": len(seqs.get("long", []))}
    if run == "prefill_main":
        return np.arange(T["main"]), "main"
    if run == "decode_main":
        return np.arange(P_MAIN - 1, T["main"]), "main"
    if run == "prefill_short":
        return np.arange(T["short"]), "short"
    if run == "decode_short":
        return np.arange(P_SHORT - 1, T["short"]), "short"
    if run == "prefill_long":
        return np.arange(STRIDE - 1, T["long"], STRIDE), "long"
    if run == "decode_long":
        k = np.arange(STRIDE - 1, T["long"], STRIDE)
        return k[k >= P_LONG - 1], "long"
    raise KeyError(run)


def compare(a, b, pos, seq):
    """a vs reference b: per position-range NMSE max/median and top-1 agreement."""
    n = nmse_rows(a, b)
    t1 = a.argmax(-1) == b.argmax(-1)
    rows = []
    for lo, hi in RANGES[seq]:
        m = (pos >= lo) & (pos < hi)
        if not m.any():
            continue
        rows.append(dict(range=f"{lo}-{hi - 1}", n=int(m.sum()), nmse_max=float(n[m].max()),
                         nmse_median=float(np.median(n[m])), top1=float(t1[m].mean())))
    bad = pos[n > 1e-6]
    return dict(ranges=rows, nmse_max=float(n.max()), nmse_median=float(np.median(n)), top1=float(t1.mean()),
                first_pos_nmse_gt_1e6=int(bad[0]) if len(bad) else None, n_pos_nmse_gt_1e6=int(len(bad)))


def selection_diff(sa, sb):
    """Positions where two indexer selections differ as sets (ignoring -1 and order)."""
    T = min(len(sa), len(sb))
    diff = [p for p in range(T) if set(sa[p][sa[p] >= 0].tolist()) != set(sb[p][sb[p] >= 0].tolist())]
    return diff


def tie_explained(scores, sa, sb, p, rtol=0.0):
    """True if the rows in which selections sa[p], sb[p] differ all have scores equal to the k-th
    best score (exact tie at the selection boundary) in the reference's scores."""
    s = scores[p]
    A, B = set(sa[p][sa[p] >= 0].tolist()), set(sb[p][sb[p] >= 0].tolist())
    k = len(B)
    if k == 0:
        return False
    kth = np.sort(s[np.isfinite(s)])[::-1][k - 1]
    return all(abs(s[j] - kth) <= rtol * abs(kth) for j in A ^ B)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny,tiny-clamp,tiny-quant,tiny-pro")
    ap.add_argument("--no-long", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    report = {"configs": {}}
    for cfg in a.configs.split(","):
        fixdir = os.path.join(FIX, cfg)
        if not os.path.exists(os.path.join(fixdir, "model.safetensors")):
            log("skip", cfg, "(no checkpoint)")
            continue
        out = os.path.join(OUT, cfg)
        import hashlib
        import shutil
        sha = hashlib.sha256(open(os.path.join(fixdir, "model.safetensors"), "rb").read()
                             + open(os.path.join(fixdir, "config.json"), "rb").read()).hexdigest()
        shaf = os.path.join(out, "checkpoint.sha256")
        if os.path.exists(out) and (not os.path.exists(shaf) or open(shaf).read().strip() != sha):
            log(cfg, "checkpoint changed: clearing cached outputs", out)
            shutil.rmtree(out)
        os.makedirs(out, exist_ok=True)
        open(shaf, "w").write(sha + "\n")
        # token sequences: the fixture generator's own function (the fixture files may be mid-rewrite);
        # checked against tokens/*.npy where present
        from dsv4ref import configs as dcfg, fixtures as dfix
        seqs = {k: v.astype(np.int64) for k, v in dfix.token_sequences(dcfg.get(cfg)).items()}
        if cfg != "tiny":
            seqs.pop("long", None)
        for k in list(seqs):
            p = os.path.join(fixdir, "tokens", k + ".npy")
            if os.path.exists(p):
                assert np.array_equal(np.load(p).astype(np.int64), seqs[k]), f"{cfg} tokens/{k} mismatch"
        is_quant = json.load(open(os.path.join(fixdir, "config.json"))).get("quantization_config") is not None
        modes = ["simon", "simoff"] + (["simact"] if is_quant else [])
        outside = run_outside(cfg, fixdir, seqs, not a.no_long, out)
        hf, src = hf_reference(cfg, fixdir, out, seqs, modes)
        C = {"sources": src, "pairs": {}, "selections": {}, "is_quant": is_quant}
        pairs = [("official_stable", m) for m in modes] + [("official", "simon"), ("official_nosim", "simoff"),
                                                            ("official_initial", "simon"),
                                                            ("official_initial", "simoff")]
        if is_quant:
            pairs += [("official_noact", "simon"), ("official_noact", "simact")]
        pairs += [("official_bf16", "simact" if is_quant else "simon")]
        pairs += [("nano", "simoff"), ("nano", "simon")]
        for o, m in pairs:
            for run in ["prefill_main", "decode_main", "prefill_short", "decode_short", "prefill_long", "decode_long"]:
                if run in outside.get(o, {}) and run in hf.get(m, {}):
                    pos, seq = positions(run, seqs)
                    C["pairs"][f"{o} vs hf-{m} {run}"] = compare(outside[o][run], hf[m][run], pos, seq)
        # self-consistency of the official code: prefill vs prefill+decode
        for o in ["official", "official_stable", "official_nosim"]:
            pos, seq = positions("decode_main", seqs)
            C["pairs"][f"{o} decode_main vs {o} prefill_main"] = compare(
                outside[o]["decode_main"], outside[o]["prefill_main"][pos], pos, seq)
        for m in modes:
            if "decode_main" in hf[m]:
                pos, seq = positions("decode_main", seqs)
                C["pairs"][f"hf-{m} decode_main vs hf-{m} prefill_main"] = compare(
                    hf[m]["decode_main"], hf[m]["prefill_main"][pos], pos, seq)
        # indexer selections (prefill of tokens/main)
        sel_pairs = ([("official_noact", "simon"), ("official_nosim", "simoff"), ("official_stable", "simact")]
                     if is_quant else
                     [("official_stable", "simon"), ("official", "simon"), ("official_nosim", "simoff")])
        for o, m in sel_pairs:
            if m not in hf:
                continue
            for li in range(8):
                ka = f"indexer_topk.L{li}"
                if ka in outside[o] and ka in hf[m]:
                    d = selection_diff(outside[o][ka], hf[m][ka])
                    e = {"n_positions": len(outside[o][ka]), "n_differ": len(d), "positions": d[:40]}
                    sp = os.path.join(fixdir, m, f"indexer_scores.L{li}.npy")
                    if os.path.exists(sp) and d:
                        sc = np.load(sp)
                        e["differ_at_exact_tie"] = sum(tie_explained(sc, outside[o][ka], hf[m][ka], p) for p in d)
                    C["selections"][f"{o} vs hf-{m} L{li}"] = e
        # MTP consistency
        if "mtp_logits" in outside["official_stable"]:
            lp, ld = outside["official_stable"]["mtp_logits"], outside["official_stable"]["mtp_logits_decode"]
            pos = np.arange(len(lp))
            C["mtp_prefill_vs_decode"] = compare(ld, lp, pos, "main")
            if cfg == "tiny":
                d = os.path.join(FIX, cfg)
                np.save(os.path.join(d, "mtp_tokens.npy"), seqs["main"].astype(np.int32))
                np.save(os.path.join(d, "mtp_logits.npy"), lp.astype(np.float32))
                np.save(os.path.join(d, "mtp_trunk_states.npy"),
                        np.load(os.path.join(out, "official_stable", "mtp_trunk_states.npy")).astype(np.float32))
        try:
            C["nano_load"] = json.load(open(os.path.join(out, "nano", "load_report.json")))
        except Exception:
            pass
        report["configs"][cfg] = C
        os.makedirs(OUT, exist_ok=True)
        json.dump(report, open(os.path.join(OUT, "agreement.json"), "w"), indent=1)
        log(cfg, "done")
    json.dump(report, open(os.path.join(OUT, "agreement.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
