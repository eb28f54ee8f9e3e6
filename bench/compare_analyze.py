#!/usr/bin/env python3
"""Summarise a bench/compare-llama-cpp.sh run directory: ours/theirs per (file, test).

Reads OUT/<cell>.theirs.<round>.json (llama-bench -o json) and OUT/<cell>.ours.<round>.json
(dsv4-bench -o json). Per round the engine's figure is its mean t/s over that round's
repetitions. The ratio is R = mean over rounds of ours / mean over rounds of theirs, and its 95%
interval is Fieller's interval for a ratio of two paired means (rounds are the paired units,
Student t with rounds-1 degrees of freedom, covariance across rounds included).
No third-party modules (no numpy on the bench machine).
"""
import glob
import json
import math
import os
import re
import sys

# two-sided 95% Student t quantiles, df 1..30
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df):
    return T975[df - 1] if 1 <= df <= 30 else 1.96


def mean(v):
    return sum(v) / len(v)


def sd(v):
    if len(v) < 2:
        return 0.0
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def fieller(x, y):
    """95% interval of mean(x)/mean(y) for paired samples x, y (Fieller)."""
    n = len(x)
    if n < 2:
        return None
    mx, my = mean(x), mean(y)
    sxx = sum((a - mx) ** 2 for a in x) / (n - 1) / n
    syy = sum((b - my) ** 2 for b in y) / (n - 1) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y)) / (n - 1) / n
    t2 = t975(n - 1) ** 2
    a = my * my - t2 * syy
    b = -2 * (mx * my - t2 * sxy)
    c = mx * mx - t2 * sxx
    disc = b * b - 4 * a * c
    if a <= 0 or disc < 0:
        return (float("nan"), float("nan"))  # unbounded
    r = math.sqrt(disc)
    return ((-b - r) / (2 * a), (-b + r) / (2 * a))


def delta_log(xs, ys):
    """95% interval of mean(xs)/mean(ys) from unpaired samples: delta method on log, Welch df."""
    nx, ny = len(xs), len(ys)
    if nx < 2 or ny < 2:
        return None
    mx, my = mean(xs), mean(ys)
    vx, vy = sd(xs) ** 2 / nx / mx ** 2, sd(ys) ** 2 / ny / my ** 2
    se = math.sqrt(vx + vy)
    if se == 0:
        return (mx / my, mx / my)
    df = (vx + vy) ** 2 / ((vx ** 2 / (nx - 1) if vx else 0) + (vy ** 2 / (ny - 1) if vy else 0))
    t = t975(max(1, int(df)))
    r = math.log(mx / my)
    return (math.exp(r - t * se), math.exp(r + t * se))


def test_name(o):
    s = f"pp{o['n_prompt']}" if o["n_prompt"] > 0 else f"tg{o['n_gen']}"
    if o.get("n_depth", 0) > 0:
        s += f" @ d{o['n_depth']}"
    return s


def main(out):
    cells = {}
    bw = None
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        m = re.match(r"(.+)\.(ours|theirs)\.(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        cell, who, rnd = m.group(1), m.group(2), int(m.group(3))
        with open(path) as f:
            txt = f.read().strip()
        if not txt:
            print(f"warning: empty {path}", file=sys.stderr)
            continue
        data = json.loads(txt)
        if who == "ours":
            if "stream" in data:
                bw = data["stream"]
            results = data["results"]
        else:
            results = data
        for o in results:
            key = (o["n_prompt"], o["n_gen"], o.get("n_depth", 0))
            d = cells.setdefault(cell, {}).setdefault(key, {"name": test_name(o), "ours": {}, "theirs": {}, "gbs": {},
                                                                  "around": {}, "all_ours": {}, "all_theirs": {}})
            d[who][rnd] = mean(o["samples_ts"])
            d["all_" + who][rnd] = list(o["samples_ts"])
            if who == "ours" and "avg_gbs" in o:
                d["gbs"][rnd] = o["avg_gbs"]
            if who == "ours" and "avg_probe_fraction" in o:
                d["around"][rnd] = o["avg_probe_fraction"]

    bw_best = max(bw["copy_gbs"], bw["triad_gbs"], bw.get("read_gbs", 0.0)) if bw else None
    print("| file | test | llama.cpp t/s | dsv4 t/s | ours/theirs | 95% interval (Fieller, rounds) | 95% (delta, all runs) | per-round ratios | dsv4 GB/s (of bw; of read around) |")
    print("|---|---|---:|---:|---:|---|---|---|---:|")
    for cell in sorted(cells):
        for key in sorted(cells[cell], key=lambda k: (k[2], k[1] > 0, k[0], k[1])):
            d = cells[cell][key]
            rounds = sorted(set(d["ours"]) & set(d["theirs"]))
            if not rounds:
                continue
            x = [d["ours"][r] for r in rounds]
            y = [d["theirs"][r] for r in rounds]
            ratio = mean(x) / mean(y)
            ci = fieller(x, y)
            if ci is None:
                cis = "n/a (1 round)"
            elif math.isnan(ci[0]):
                cis = "unbounded"
            else:
                cis = f"[{ci[0]:.3f}, {ci[1]:.3f}]"
            dl = delta_log([v for r in rounds for v in d["all_ours"][r]], [v for r in rounds for v in d["all_theirs"][r]])
            dls = "n/a" if dl is None else f"[{dl[0]:.3f}, {dl[1]:.3f}]"
            per = ", ".join(f"{a / b:.3f}" for a, b in zip(x, y))
            g = ""
            if d["gbs"]:
                gv = [d["gbs"][r] for r in rounds if r in d["gbs"]]
                g = f"{mean(gv):.2f}"
                if bw_best:
                    g += f" ({100 * mean(gv) / bw_best:.0f}%"
                av = [d["around"][r] for r in rounds if r in d["around"]]
                if av:
                    g += ("; " if bw_best else " (") + f"{100 * mean(av):.0f}%"
                if bw_best or av:
                    g += ")"
            print(f"| {cell} | {d['name']} | {mean(y):.2f} ± {sd(y):.2f} | {mean(x):.2f} ± {sd(x):.2f} | "
                  f"**{ratio:.3f}** | {cis} | {dls} | {per} | {g} |")
    print()
    if bw:
        print(f"Bandwidth (dsv4-bench STREAM-style, {bw['threads']} threads, 3 x {bw['array_bytes'] / 2**20:.0f} MiB, "
              f"best of {bw['best_of']}): copy {bw['copy_gbs']:.2f} GB/s, triad {bw['triad_gbs']:.2f} GB/s"
              + (f", read {bw['read_gbs']:.2f} GB/s" if "read_gbs" in bw else "")
              + "; 'of bw' is against the largest; 'of read around' against a read pass right before and after "
              "each of our tg repetitions (dsv4-bench --bw-probe-mb), mean over rounds.")
    print("t/s: mean ± sd over rounds of each round's mean over its repetitions. "
          "Ratio: mean(ours)/mean(theirs) over rounds; interval: Fieller, paired by round, t(rounds-1); "
          "second interval: delta method on the log ratio over all individual runs (unpaired, Welch df).")


if __name__ == "__main__":
    main(sys.argv[1])
