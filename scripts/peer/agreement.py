#!/usr/bin/env python3
"""Agreement between the reference fixtures and upstream llama.cpp (the peer).

For every tests/fixtures/<config>/manifest.json this runs build/peer/bin/dump_logits on the fixture's
model.gguf and token sequences in three modes (one batch, chunked, token by token) and compares the
peer's logits with the reference logits of every simulation mode present (simon = FP8 KV round trip +
FP4 indexer simulated, simoff = none, simact = simon + FP8 activations), by position range.

Measures the peer; gates nothing. Writes tests/fixtures/agreement-peer.md (and a JSON twin under
build/peer/agreement/). Run with the reference venv (it has numpy):

  scripts/reference/.venv/bin/python scripts/peer/agreement.py [--configs tiny,tiny-pro] [--chunk 37]
      [--no-long] [--kv f32] [--fa off]

Metrics per position p (a = peer, b = reference, float64):
  NMSE(p) = sum_v (a[p,v] - b[p,v])^2 / sum_v b[p,v]^2      (reported: max and median over the range)
  top-1   = argmax_v a[p,v] == argmax_v b[p,v]                (reported: fraction of the range)
  margin  = reference top-1 minus top-2 logit at the positions where top-1 differs (min shown), to tell
            near-ties from real disagreements.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
PEER = ROOT / "build" / "peer"
HARNESS = PEER / "bin" / "dump_logits"
WORK = PEER / "agreement"


def sha256(p: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_peer(cfg: str, gguf: pathlib.Path, toks: pathlib.Path, mode: str, chunk: int, kv: str, fa: str,
             log, topk: bool = False, prefill: int = 0) -> tuple[np.ndarray, float]:
    """Cached by (gguf sha, tokens sha, mode, chunk, kv, fa, topk[, prefill])."""
    tag = " topk" if topk else ""
    pf = f" prefill {prefill}" if mode == "decode" else ""
    key = hashlib.sha256(f"{sha256(gguf)} {sha256(toks)} {mode} {chunk} {kv} {fa}{tag}{pf}".encode()).hexdigest()[:16]
    d = WORK / cfg
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{toks.name.split('.')[0]}.{mode}.{key}.npy"
    meta = out.with_suffix(".json")
    if out.exists() and meta.exists():
        return load_stable(out), json.loads(meta.read_text())["seconds"]
    cmd = [str(HARNESS), "-m", str(gguf), "-t", str(toks), "-o", str(out), "--mode", mode,
           "--chunk", str(chunk), "--threads", "2", "--kv", kv, "--fa", fa]
    if topk:
        cmd += ["--dump-topk", str(out.with_suffix(""))]
    if mode == "decode":
        cmd += ["--prefill", str(prefill)]
    t0 = time.time()
    r = subprocess.run(["nice", "-n", "10"] + cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if r.returncode != 0:
        raise RuntimeError(f"dump_logits failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    meta.write_text(json.dumps({"cmd": cmd, "seconds": dt,
                                "log": [l for l in r.stderr.splitlines() if l.startswith("dump_logits:")]}))
    log(f"    peer {cfg} {toks.name.split('.')[0]} {mode}{tag}: {dt:.1f}s")
    return load_stable(out), dt


def load_peer_topk(cfg: str, gguf: pathlib.Path, toks: pathlib.Path, mode: str, chunk: int, kv: str, fa: str, log):
    run_peer(cfg, gguf, toks, mode, chunk, kv, fa, log, topk=True)
    key = hashlib.sha256(f"{sha256(gguf)} {sha256(toks)} {mode} {chunk} {kv} {fa} topk".encode()).hexdigest()[:16]
    base = WORK / cfg / f"{toks.name.split('.')[0]}.{mode}.{key}"
    res = {}
    for p in sorted(base.parent.glob(base.name + ".L*.topk.npy")):
        il = int(p.name[len(base.name) + 2:].split(".")[0])
        res[il] = (load_stable(p), load_stable(str(p).replace(".topk.npy", ".score.npy")))
    return res


def selection_diff(peer_tk: np.ndarray, ref_tk: np.ndarray, scores: np.ndarray, rel_tol: float = 1e-6):
    """Per position: 0 = same set, 1 = the sets differ only in rows whose score equals the k-th
    selected score (a tie at the selection boundary), 2 = differ beyond that tie.
    `scores` are the reference's indexer scores when the fixture has them, else the peer's own."""
    T = min(len(peer_tk), len(ref_tk))
    k = peer_tk.shape[1]
    cls = np.zeros(T, dtype=np.int8)
    gap = np.full(T, np.nan)
    for p in range(T):
        a = set(int(x) for x in peer_tk[p] if x >= 0)
        b = set(int(x) for x in ref_tk[p] if x >= 0)
        if a == b:
            continue
        sc = scores[p].astype(np.float64)
        fin = np.isfinite(sc)
        srt = np.sort(sc[fin])[::-1]
        kth = srt[min(k, len(srt)) - 1] if len(srt) else 0.0
        scale = max(1e-30, np.abs(sc[fin]).max()) if fin.any() else 1.0
        d = a ^ b
        dev = max(abs(sc[i] - kth) if i < len(sc) and np.isfinite(sc[i]) else np.inf for i in d)
        gap[p] = dev / scale
        cls[p] = 1 if dev <= rel_tol * scale else 2
    return cls, gap


def snapshot(cfg: str, src: pathlib.Path) -> pathlib.Path:
    """Copy a fixture input into build/peer/agreement/<cfg>/inputs/ (content-addressed) so that a
    concurrent regeneration of tests/fixtures cannot change or truncate it under the harness."""
    import shutil
    for _ in range(30):
        h1 = sha256(src)
        dst = WORK / cfg / "inputs" / f"{src.stem}.{h1[:16]}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            if sha256(tmp) != h1 or sha256(src) != h1:
                tmp.unlink()
                time.sleep(2)
                continue
            tmp.rename(dst)
        return dst
    raise RuntimeError(f"{src} keeps changing")


def load_stable(p: pathlib.Path) -> np.ndarray:
    for _ in range(30):
        try:
            a = np.load(p)
            if sha256(p):
                return a
        except Exception:  # noqa: BLE001  (file being rewritten)
            time.sleep(2)
    return np.load(p)


def widened_f32(cfg: str, gguf_p: pathlib.Path, log) -> pathlib.Path | None:
    import gguf as _g
    r = _g.GGUFReader(str(gguf_p))
    ints = {"I8", "I16", "I32", "I64", "F32"}
    if all(t.tensor_type.name in ints for t in r.tensors):
        return None
    out = gguf_p.with_name(gguf_p.stem + ".f32w.gguf")
    if not out.exists():
        subprocess.run([sys.executable, str(pathlib.Path(__file__).with_name("gguf_to_f32.py")), str(gguf_p), str(out)],
                       check=True, capture_output=True)
        log(f"    widened {gguf_p.name} to F32")
    return out


def nmse_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return ((a - b) ** 2).sum(1) / (b ** 2).sum(1)


def ranges_for(args: dict, n_max: int) -> list[tuple[int, int, str]]:
    w = int(args["window_size"])
    k = int(args["index_topk"])
    sel = 4 * (k + 1) - 1  # first position with more than top-k CSA rows (ratio 4)
    cuts = [(0, "window only"), (w, "window + all CSA rows"), (sel, "indexer top-k selective"),
            (128, "HCA rows present"), (300, "long"), (1024, "long"), (4096, "long"), (8192, "")]
    cuts = sorted({c[0]: c for c in cuts}.values())
    out = []
    for (s, lab), (e, _) in zip(cuts, cuts[1:]):
        if s >= n_max:
            break
        out.append((s, min(e, n_max), lab))
    return out


def compare(peer: np.ndarray, ref: np.ndarray, pos: np.ndarray, rngs) -> list[dict]:
    a = peer[pos]
    e = nmse_rows(a, ref)
    ta = a.argmax(1)
    tb = ref.argmax(1)
    srt = np.sort(ref.astype(np.float64), axis=1)
    margin = srt[:, -1] - srt[:, -2]
    rows = []
    for s, t, lab in rngs:
        m = (pos >= s) & (pos < t)
        if not m.any():
            continue
        dis = m & (ta != tb)
        rows.append({
            "range": f"{s}-{t - 1}", "label": lab, "n": int(m.sum()),
            "nmse_max": float(e[m].max()), "nmse_median": float(np.median(e[m])),
            "top1": float((ta[m] == tb[m]).mean()),
            "n_top1_diff": int(dis.sum()),
            "diff_margin_min": float(margin[dis].min()) if dis.any() else None,
            "diff_positions": pos[dis][:6].tolist(),
        })
    m = np.ones_like(pos, dtype=bool)
    dis = ta != tb
    rows.append({"range": "all", "label": "", "n": int(m.sum()),
                 "nmse_max": float(e.max()), "nmse_median": float(np.median(e)),
                 "top1": float((ta == tb).mean()), "n_top1_diff": int(dis.sum()),
                 "diff_margin_min": float(margin[dis].min()) if dis.any() else None,
                 "diff_positions": pos[dis][:6].tolist()})
    return rows


def fmt(x):
    if x is None:
        return "–"
    if isinstance(x, float):
        if x == 0:
            return "0"
        return f"{x:.2e}"
    return str(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default=None)
    ap.add_argument("--chunk", type=int, default=37)
    ap.add_argument("--chunk-long", type=int, default=509)
    ap.add_argument("--no-long", action="store_true")
    ap.add_argument("--long-token", action="store_true",
                    help="also run the 8192-token sequence fully token by token (slow: tens of minutes)")
    ap.add_argument("--kv", default="f32")
    ap.add_argument("--fa", default="off")
    ap.add_argument("--out", default=str(FIX / "agreement-peer.md"))
    ns = ap.parse_args()

    if not HARNESS.exists():
        sys.exit("build/peer/bin/dump_logits missing: run scripts/peer/build.sh")
    logf = open(WORK.parent / "agreement.log", "a") if WORK.parent.exists() else None

    def log(s):
        print(s, flush=True)
        if logf:
            logf.write(s + "\n")
            logf.flush()

    cfgs = sorted(p.parent.name for p in FIX.glob("*/manifest.json"))
    if ns.configs:
        cfgs = [c for c in ns.configs.split(",") if c in cfgs]
    results = {}
    for cfg in cfgs:
        d = FIX / cfg
        man = json.loads((d / "manifest.json").read_text())
        files = man.get("files", {})
        args = man["args"]
        seqs = man["reference"]["sequences"]
        sim_modes = sorted({k.split("/")[0] for k in files if k.endswith(".npy") and "/prefill_" in k}
                           | {p.parent.name for p in d.glob("*/prefill_main.npy")})
        gguf = snapshot(cfg, d / "model.gguf")
        log(f"== {cfg}: sim modes {sim_modes}, sequences {list(seqs)}")
        res = {"sim_modes": sim_modes, "gguf_sha256": sha256(gguf), "seqs": {}}
        for seq, sinfo in seqs.items():
            toks_p = d / "tokens" / f"{seq}.npy"
            if not toks_p.exists():
                continue
            toks_p = snapshot(cfg, toks_p)
            if seq == "long" and ns.no_long:
                continue
            toks = load_stable(toks_p)
            T = len(toks)
            ref_pre_pos = np.arange(T)
            if (d / f"tokens/{seq}_positions.npy").exists():
                ref_pre_pos = load_stable(d / f"tokens/{seq}_positions.npy").astype(np.int64)
            P = int(sinfo.get("decode_prefill", 1))
            ref_dec_pos = np.arange(P - 1, T)
            if (d / f"tokens/{seq}_decode_positions.npy").exists():
                ref_dec_pos = load_stable(d / f"tokens/{seq}_decode_positions.npy").astype(np.int64)
            rngs = ranges_for(args, T)
            P = int(sinfo.get("decode_prefill", 1))
            peer = {}
            timing = {}
            chunk = ns.chunk_long if seq == "long" else ns.chunk
            for mode in ("batch", "chunked", "token", "decode"):
                if seq == "long" and mode == "token" and not ns.long_token:
                    continue
                peer[mode], timing[mode] = run_peer(cfg, gguf, toks_p, mode, chunk, ns.kv, ns.fa, log, prefill=P)
            # attribution probe: the same weights widened exactly to F32 (only when the GGUF has
            # BF16/F16/quantized float tensors): isolates the peer's CPU activation rounding
            wide = widened_f32(cfg, gguf, log)
            if wide is not None and seq != "long":
                peer["batch-f32w"], timing["batch-f32w"] = run_peer(cfg, wide, toks_p, "batch", chunk, ns.kv, ns.fa, log)
            sres = {"T": T, "chunk": chunk, "timing_s": timing, "cmp": []}
            # peer internal consistency
            allpos = np.arange(T)
            for mode in peer:
                if mode in ("batch", "batch-f32w"):
                    continue
                sres["cmp"].append({"what": f"peer {mode} vs peer batch", "rows": compare(peer[mode], peer["batch"][allpos], allpos, rngs)})
            for sm in sim_modes:
                fp = d / sm / f"prefill_{seq}.npy"
                if fp.exists():
                    ref = load_stable(fp)
                    for mode in peer:
                        if mode == "decode":
                            continue  # its prefill rows equal batch; compared against the decode reference below
                        sres["cmp"].append({"what": f"peer {mode} vs ref {sm} prefill",
                                            "rows": compare(peer[mode], ref, ref_pre_pos, rngs)})
                fd = d / sm / f"decode_{seq}.npy"
                if fd.exists():
                    ref = load_stable(fd)
                    for mode in ("decode", "token"):
                        if mode in peer:
                            sres["cmp"].append({"what": f"peer {mode} vs ref {sm} decode (prefill {P})",
                                                "rows": compare(peer[mode], ref, ref_dec_pos, rngs)})
            # indexer selections (main sequence only: the reference dumps them for tokens/main)
            if seq == "main":
                sel = {}
                for mode in ("batch", "token"):
                    try:
                        ptk = load_peer_topk(cfg, gguf, toks_p, mode, chunk, ns.kv, ns.fa, log)
                    except RuntimeError as e:  # noqa: PERF203
                        log(f"    topk capture failed: {e}")
                        continue
                    for sm in sim_modes:
                        for il, (tk, psc) in ptk.items():
                            rt = d / sm / f"indexer_topk.L{il}.npy"
                            rs = d / sm / f"indexer_scores.L{il}.npy"
                            if not rt.exists():
                                continue
                            src = "ref" if rs.exists() else "peer"
                            cls, gap = selection_diff(tk, load_stable(rt), load_stable(rs) if rs.exists() else psc)
                            nz = np.nonzero(cls)[0]
                            sel[f"peer {mode} vs ref {sm}, CSA layer {il} ({src} scores)"] = {
                                "n_pos": int(len(cls)), "n_same": int((cls == 0).sum()),
                                "n_tie_only": int((cls == 1).sum()), "n_beyond_tie": int((cls == 2).sum()),
                                "first_diff": int(nz[0]) if len(nz) else None,
                                "tie_positions": np.nonzero(cls == 1)[0][:12].tolist(),
                                "beyond_positions": np.nonzero(cls == 2)[0][:12].tolist(),
                                "beyond_gap_max": float(np.nanmax(np.where(cls == 2, gap, np.nan))) if (cls == 2).any() else None,
                            }
                    # exact ties at the selection boundary in the peer's own scores
                    for il, (tk, psc) in ptk.items():
                        kk = tk.shape[1]
                        tp = []
                        for p_ in range(len(psc)):
                            v = np.sort(psc[p_][np.isfinite(psc[p_])])[::-1]
                            if len(v) > kk and v[kk - 1] == v[kk]:
                                tp.append((p_, float(v[kk - 1])))
                        res.setdefault("peer_ties", {})[f"peer {mode}, CSA layer {il}"] = tp
                res.setdefault("selections", {}).update(sel)
                # first position where the peer's logits leave float32 noise, per reference sim mode
                for sm in sim_modes:
                    fp = d / sm / "prefill_main.npy"
                    if fp.exists():
                        e = nmse_rows(peer["batch"][ref_pre_pos], load_stable(fp))
                        big = np.nonzero(e > 1e-8)[0]
                        res.setdefault("first_nmse_gt_1e-8", {})[sm] = int(ref_pre_pos[big[0]]) if len(big) else None
            # reference: sim on vs off (same position set)
            if "simoff" in sim_modes:
                fo = d / "simoff" / f"prefill_{seq}.npy"
                if fo.exists():
                    refoff = load_stable(fo)
                    for sm in sim_modes:
                        if sm == "simoff":
                            continue
                        f1 = d / sm / f"prefill_{seq}.npy"
                        if f1.exists():
                            full = np.zeros((T, refoff.shape[1]), dtype=np.float32)
                            full[ref_pre_pos] = load_stable(f1)
                            sres["cmp"].append({"what": f"ref {sm} vs ref simoff prefill",
                                                "rows": compare(full, refoff, ref_pre_pos, rngs)})
            res["seqs"][seq] = sres
        results[cfg] = res

    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "agreement-peer.json").write_text(json.dumps(results, indent=1))
    write_md(pathlib.Path(ns.out), results, ns)
    log(f"wrote {ns.out}")


def write_md(path: pathlib.Path, results: dict, ns) -> None:
    L = []
    L.append("# Agreement: reference fixtures vs upstream llama.cpp (the peer)")
    L.append("")
    L.append("Generated by `scripts/peer/agreement.py` (run with `scripts/reference/.venv/bin/python`) on "
             f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. It measures the peer; it gates nothing.")
    L.append("")
    L.append("Peer: upstream llama.cpp `0c1e57098` (vendored in the PyPI sdist `llama-cpp-python==0.3.36`, see "
             "`scripts/peer/PINNED.md`), CPU build, harness `scripts/peer/dump_logits.cpp` "
             f"(n_threads 2, flash attention `{ns.fa}`, K/V cache `{ns.kv}`, n_ctx = tokens rounded up to 256, one "
             "sequence, explicit positions 0..T-1, logits requested for every token). Modes: **batch** = all "
             "tokens in one `llama_decode` (n_batch = n_ubatch = T); **chunked** = consecutive `llama_decode` "
             f"calls of {ns.chunk} tokens ({ns.chunk_long} for `long`), deliberately not a multiple of the "
             "compression ratios; **batch-f32w** (configs with BF16/MXFP4 tensors only) = batch on a copy "
             "of the GGUF with every float tensor widened exactly to F32 (`scripts/peer/gguf_to_f32.py`), to "
             "separate upstream's CPU activation rounding from everything else; **token** = one token per call (not run for `long`, where it takes tens of "
             "minutes on 2 shared cores; `--long-token` adds it); **decode** = the reference's protocol: the "
             "first P tokens in one call (P = the manifest's `decode_prefill`: 3 / 200 / 7680 for short / main / "
             "long), then one token per call.")
    L.append("")
    L.append("Reference: `tests/fixtures/<config>/<simmode>/prefill_<seq>.npy` (one full prefill) and "
             "`decode_<seq>.npy` (prefill P tokens then one token per call); sim modes: `simoff` = no "
             "quantisation simulation, `simon` = FP8 (e4m3) round trip of the stored KV rows + Hadamard/FP4 "
             "indexer simulation, `simact` (tiny-quant only) = `simon` + FP8 activation quantisation. "
             "NMSE per position = Σ(a−b)²/Σb² with a = peer (or the first-named side), b = reference; "
             "\"max/med\" over the positions of the range; top-1 = fraction of positions whose argmax agrees; "
             "\"margin\" = smallest reference top-1 − top-2 logit gap among the positions whose top-1 differs.")
    L.append("")
    L.append("Position ranges (from each config's window w and indexer top-k k): `window only` = [0, w); "
             "`window + all CSA rows` = [w, 4(k+1)−1) where every compressed row is still selected; "
             "`indexer top-k selective` = from the first position with more than k CSA rows; "
             "`HCA rows present` = from position 128 (first ratio-128 row complete at 127).")
    L.append("")
    for cfg, res in results.items():
        L.append(f"## {cfg}")
        L.append("")
        L.append(f"model.gguf sha256 `{res['gguf_sha256'][:16]}…`; reference sim modes: {', '.join(res['sim_modes'])}.")
        L.append("")
        if res.get("selections"):
            L.append("Indexer selections, `tokens/main` (peer captured via `dump_logits --dump-topk`; reference "
                     "`<simmode>/indexer_topk.L<il>.npy` + `indexer_scores`). A differing position is a *tie* when "
                     "every row in the symmetric difference has a reference score equal (rel. 1e-6 of the row max) "
                     "to the k-th selected score; otherwise *beyond tie* (gap = largest |score − k-th| / max|score|).")
            L.append("")
            L.append("| comparison | positions | same set | differ: tie only | differ: beyond tie | max gap | first diff | tie positions (first) | beyond-tie positions (first) |")
            L.append("|---|---|---|---|---|---|---|---|---|")
            for k, v in res["selections"].items():
                L.append(f"| {k} | {v['n_pos']} | {v['n_same']} | {v['n_tie_only']} | {v['n_beyond_tie']} | "
                         f"{fmt(v['beyond_gap_max'])} | {fmt(v['first_diff'])} | "
                         f"{','.join(map(str, v['tie_positions'])) or '–'} | {','.join(map(str, v['beyond_positions'])) or '–'} |")
            L.append("")
            if res.get("peer_ties"):
                L.append("Exact ties at the top-k boundary in the peer's own indexer scores (k-th score == (k+1)-th; "
                         "position:score, first 16): " + "; ".join(
                             f"{k}: " + (", ".join(f"{p}:{v:g}" for p, v in t[:16]) or "none") + f" ({len(t)} in all)"
                             for k, t in res["peer_ties"].items()) + ".")
                L.append("")
            if res.get("first_nmse_gt_1e-8"):
                L.append("First position where peer batch vs reference prefill NMSE exceeds 1e-8: " +
                         ", ".join(f"{k}: {fmt(v)}" for k, v in res["first_nmse_gt_1e-8"].items()) + ".")
                L.append("")
        for seq, s in res["seqs"].items():
            tim = ", ".join(f"{k} {v:.1f}s" for k, v in s["timing_s"].items())
            L.append(f"### {cfg} / {seq} ({s['T']} tokens; peer time: {tim})")
            L.append("")
            L.append("| comparison | positions | n | NMSE max | NMSE med | top-1 | #diff | margin | first diff pos |")
            L.append("|---|---|---|---|---|---|---|---|---|")
            for c in s["cmp"]:
                for r in c["rows"]:
                    lab = f"{r['range']}" + (f" ({r['label']})" if r["label"] else "")
                    L.append(f"| {c['what']} | {lab} | {r['n']} | {fmt(r['nmse_max'])} | {fmt(r['nmse_median'])} | "
                             f"{r['top1']:.4f} | {r['n_top1_diff']} | {fmt(r['diff_margin_min'])} | "
                             f"{','.join(map(str, r['diff_positions'])) or '–'} |")
            L.append("")
    extra = ROOT / "scripts" / "peer" / "agreement-notes.md"
    if extra.exists():
        L.append(extra.read_text())
    path.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
