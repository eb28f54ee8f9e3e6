#!/usr/bin/env python3
"""bench/pair-bench.py: dsv4 and upstream llama.cpp decode speed measured in turns seconds apart, both
models loaded at once (issue 7; bench/RESULTS.md, "Session 6").

Why: on a shared machine the memory bandwidth moves between phases (a plain 2-thread read of a
1 GiB buffer here gives 16-35 GB/s for tens of seconds, then 50-60 GB/s), and decode is bound by
it. compare-llama-cpp.sh alternates whole llama-bench / dsv4-bench invocations, so the two sides of
one round's tg pair are a minute or more apart and each round's ratio is as much the phase as the
engine. Here each engine is a worker process with its model loaded and its state at the depth
built once (dsv4-bench --worker; scripts/peer/bench_worker.cpp, which runs what llama-bench runs),
and the controller asks for one timed run at a time, alternating which engine goes first
(A B, B A, …), with a short pause between runs so neither engine's idle threads overlap the
other's run. Pairs are the units: ratio of means, Fieller's 95% interval over pairs (as
compare_analyze.py), per-pair ratios.

Usage:
  bench/pair-bench.py --file build/bench-models/flash-2l-upstream.gguf [--file ...] \\
      [--ours build/lead/tools/dsv4-bench] [--theirs build/peer/bin/bench_worker] \\
      [--threads 2] [--tg 128] [--pp 0] [--depths 0,4096] [--pairs 12] [--out DIR]

Memory: both engines hold the model (ours read into memory when it fits, upstream's mapped), so a
file larger than about half the RAM does not fit twice; the script checks before starting.
Time (flash-2l, 2 cores, tg 128, 12 pairs, depths 0 and 4096): ≈ 8 min per file (loads ≈ 30 s,
the d4096 states ≈ 80 s, 24 pairs × ≈ 14 s).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_analyze import fieller, mean, sd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Worker:
    def __init__(self, name, argv, log):
        self.name = name
        self.log = open(log, "w")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, bufsize=1)
        self.expect("ready")

    def expect(self, what):
        line = self.p.stdout.readline().strip()
        if not line.startswith(what):
            raise SystemExit(f"{self.name}: expected '{what}', got '{line or '(exit)'}' (log: {self.log.name})")
        return line

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return float(self.expect(cmd.split()[0]).split()[2])

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=60)
        except Exception:
            self.p.kill()
        self.log.close()


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", action="append", required=True)
    ap.add_argument("--ours", default=os.path.join(ROOT, "build/lead/tools/dsv4-bench"))
    ap.add_argument("--theirs", default=os.path.join(ROOT, "build/peer/bin/bench_worker"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--pp", type=int, default=0)
    ap.add_argument("--depths", default="0,4096")
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between runs")
    ap.add_argument("-b", type=int, default=2048)
    ap.add_argument("-ub", type=int, default=512)
    ap.add_argument("--out", default=os.path.join(ROOT, "build/bench-compare/pair-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())))
    a = ap.parse_args()
    depths = [int(d) for d in a.depths.split(",")]
    tests = ([("pp", a.pp)] if a.pp > 0 else []) + ([("tg", a.tg)] if a.tg > 0 else [])
    if not tests or a.pairs < 2:
        raise SystemExit("need --tg or --pp > 0 and --pairs ≥ 2")
    os.makedirs(a.out, exist_ok=True)
    n_ctx = max(depths) + max(a.pp, a.tg) + 1
    results = []
    t_start = time.time()
    for f in a.file:
        size = os.path.getsize(f)
        if 2 * size > mem_available():
            raise SystemExit(f"{f}: {size / 2**30:.1f} GiB does not fit twice in the "
                             f"{mem_available() / 2**30:.1f} GiB available")
        base = os.path.basename(f).removesuffix(".gguf")
        print(f"[{time.strftime('%H:%M:%S')}] {base}: loading both engines", file=sys.stderr)
        ours = Worker("dsv4", [a.ours, "--worker", "-m", f, "-t", str(a.threads), "-p", str(a.pp), "-n", str(a.tg),
                               "-d", a.depths, "-b", str(a.b), "-ub", str(a.ub)], os.path.join(a.out, base + ".ours.log"))
        theirs = Worker("llama.cpp", [a.theirs, "-m", f, "-t", str(a.threads), "-c", str(n_ctx), "-b", str(a.b),
                                      "-ub", str(a.ub)], os.path.join(a.out, base + ".theirs.log"))
        try:
            for d in depths:
                built = {w.name: w.ask(f"depth {d}") for w in (ours, theirs)}
                for w in (ours, theirs):  # warm-up: one full run each, so every page is touched
                    for kind, n in tests:
                        w.ask(f"{kind} {n}")
                for kind, n in tests:
                    x, y = [], []
                    for i in range(a.pairs):
                        order = (ours, theirs) if i % 2 == 0 else (theirs, ours)
                        got = {}
                        for w in order:
                            time.sleep(a.pause)
                            got[w.name] = n / w.ask(f"{kind} {n}")
                        x.append(got["dsv4"])
                        y.append(got["llama.cpp"])
                        print(f"[{time.strftime('%H:%M:%S')}] {base} {kind}{n} d{d} pair {i + 1}/{a.pairs}: "
                              f"ours {x[-1]:.2f} theirs {y[-1]:.2f} t/s ({x[-1] / y[-1]:.3f})", file=sys.stderr)
                    results.append({"file": base, "test": f"{kind}{n}" + (f" @ d{d}" if d else ""), "depth": d,
                                    "ours_ts": x, "theirs_ts": y, "depth_build_s": built})
        finally:
            ours.close()
            theirs.close()
    with open(os.path.join(a.out, "pairs.json"), "w") as fo:
        json.dump({"params": vars(a), "results": results, "seconds": time.time() - t_start}, fo, indent=1)
    print("| file | test | llama.cpp t/s | dsv4 t/s | ours/theirs | 95% interval (Fieller, pairs) | pairs ahead | per-pair ratios |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for r in results:
        x, y = r["ours_ts"], r["theirs_ts"]
        ci = fieller(x, y)
        cis = "unbounded" if ci is None or ci[0] != ci[0] else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        ahead = sum(1 for p, q in zip(x, y) if p > q)
        per = ", ".join(f"{p / q:.3f}" for p, q in zip(x, y))
        print(f"| {r['file']} | {r['test']} | {mean(y):.2f} ± {sd(y):.2f} | {mean(x):.2f} ± {sd(x):.2f} | "
              f"**{mean(x) / mean(y):.3f}** | {cis} | {ahead}/{len(x)} | {per} |")
    print(f"\nEach pair: one run of each engine, seconds apart, the first of the pair alternating; {a.pause} s "
          f"between runs; threads {a.threads}; t/s mean ± sd over pairs. Raw: {a.out}/pairs.json "
          f"({(time.time() - t_start) / 60:.1f} min).")


if __name__ == "__main__":
    main()
