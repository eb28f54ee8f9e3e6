#!/usr/bin/env python3
"""Time `dsv4-gguf-info --validate [--header-only] FILE` and report its peak RSS.

usage: bench_open.py [--tool PATH] [--runs N] FILE...   (FILE: a .gguf, or shard 1 of a split set;
the size used for 'RSS % of file size' is the sum of all shards next to it with the same prefix).

'cold' runs first evict the file's pages from the page cache with posix_fadvise(DONTNEED) (only
this file's clean pages; nothing system-wide). Standard library only; needs /usr/bin/time.
"""
import argparse
import os
import re
import statistics
import subprocess
import time


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def shard_set(path):
    m = re.match(r"(.*)-(\d{5})-of-(\d{5})\.gguf$", path)
    if not m:
        return [path]
    return [f"{m.group(1)}-{i:05d}-of-{m.group(3)}.gguf" for i in range(1, int(m.group(3)) + 1)]


def run(tool, args, files, cold, n):
    walls, rss = [], []
    for _ in range(n):
        if cold:
            evict(files)
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", tool] + args, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        rss.append(int(r.stderr.strip().splitlines()[-1]))
        if r.returncode != 0:
            raise SystemExit(f"{tool} {' '.join(args)} failed:\n{r.stderr}")
    return statistics.median(walls), max(walls), max(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/release/tools/dsv4-gguf-info")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    print("file\tmode\tcache\tapparent_bytes\twall_median_ms\twall_max_ms\tpeak_rss_kib\trss_pct_of_size")
    for f in a.files:
        files = shard_set(f)
        size = sum(os.path.getsize(x) for x in files)
        for mode in (["--validate", "--header-only"], ["--validate"]):
            for cold in (False, True):
                med, mx, r = run(a.tool, mode + [f], files, cold, a.runs)
                print(f"{os.path.basename(f)}\t{' '.join(mode)}\t{'cold' if cold else 'warm'}\t{size}\t"
                      f"{med * 1000:.1f}\t{mx * 1000:.1f}\t{r}\t{r * 1024 / size * 100:.4f}")


if __name__ == "__main__":
    main()
