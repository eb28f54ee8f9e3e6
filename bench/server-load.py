#!/usr/bin/env python3
"""Load test for dsv4-server: latency under 1, 4 and 8 concurrent streams (issue 6, last bullet).

Starts `dsv4-server` on a model on a free loopback port with `-np N` slots, waits for /health,
then for each concurrency level C runs C client threads that each send streaming
/v1/chat/completions requests back to back (bounded by --requests-per-stream and --time-limit
seconds per level). Per request it records:

  * TTFT: from sending the request to the first SSE chunk carrying a non-empty `content` or
    `reasoning_content` delta (includes queueing when C > slots, and the prefill);
  * ITL: every gap between consecutive SSE chunks carrying content/reasoning deltas. The server
    sends one chunk per decoded token except when text is held back (incomplete UTF-8, a possible
    stop string or marker), so a gap can occasionally span more than one token; the table shows
    tokens/chunks so this is visible;
  * completion tokens (from `usage`, requested via stream_options.include_usage).

A side thread polls GET /health every --health-interval seconds (one keep-alive connection, as a
load balancer would) and records each latency. The /health columns use only the samples taken
while all C streams had a request in flight; the overall column count is also printed.

Prints a markdown table. Loopback only; the server is stopped with SIGTERM at the end and its
exit status must be 0 (else this script exits 1).

Example:
  .venv-test/bin/python bench/server-load.py -m build/load-models/small.gguf -np 8
"""

import argparse
import http.client
import json
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent

PROMPT = ("Request {i}. Write a short story about a lighthouse keeper who finds a message in a "
          "bottle, and describe the sea, the weather and the keeper's thoughts in detail.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class Server:
    def __init__(self, exe, model, slots, extra, log_path):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")
        cmd = [str(exe), "-m", str(model), "--host", self.host, "--port", str(self.port),
               "-np", str(slots), *extra]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_text()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("server did not come up in 300 s: " + self.log_text())
            time.sleep(0.05)

    def log_text(self):
        self.log.flush()
        return pathlib.Path(self.log_path).read_text(errors="replace")[-4000:]

    def stop(self, timeout=60):
        """SIGTERM, wait; returns the exit status (killed and -9 if it did not exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return -9
        self.log.close()
        return self.proc.returncode


def stream_request(host, port, body, timeout):
    """One streaming chat request. Returns dict with t_send, ttft, gaps, chunks, tokens, error."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    data = json.dumps(body).encode()
    out = {"ttft": None, "gaps": [], "chunks": 0, "tokens": None, "error": None, "finish": None}
    t0 = time.perf_counter()
    out["t_send"] = t0
    try:
        conn.request("POST", "/v1/chat/completions", body=data,
                     headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            out["error"] = f"HTTP {resp.status}: {resp.read()[:200]!r}"
            return out
        last = None
        while True:
            line = resp.readline()
            if not line:
                break
            now = time.perf_counter()
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            ev = json.loads(payload)
            if "error" in ev:
                out["error"] = str(ev["error"])[:200]
                break
            if ev.get("usage"):
                out["tokens"] = ev["usage"].get("completion_tokens")
            for ch in ev.get("choices") or []:
                if ch.get("finish_reason"):
                    out["finish"] = ch["finish_reason"]
                d = ch.get("delta") or {}
                if d.get("content") or d.get("reasoning_content"):
                    out["chunks"] += 1
                    if last is None:
                        out["ttft"] = now - t0
                    else:
                        out["gaps"].append(now - last)
                    last = now
        out["t_end"] = time.perf_counter()
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    out.setdefault("t_end", time.perf_counter())
    return out


def run_level(srv, conc, args, counter):
    stop_health = threading.Event()
    in_flight = [0]
    lock = threading.Lock()
    health = []   # (latency_s, all_in_flight, ok)
    results = []
    deadline = time.monotonic() + args.time_limit

    def health_loop():
        sess = requests.Session()
        while not stop_health.is_set():
            with lock:
                busy = in_flight[0] >= conc
            t = time.perf_counter()
            try:
                ok = sess.get(srv.url + "/health", timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            health.append((time.perf_counter() - t, busy, ok))
            stop_health.wait(args.health_interval)
        sess.close()

    def worker():
        for _ in range(args.requests_per_stream):
            if time.monotonic() >= deadline:
                break
            with lock:
                counter[0] += 1
                i = counter[0]
            body = {
                "messages": [{"role": "user", "content": PROMPT.format(i=i)}],
                "max_tokens": args.max_tokens,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
                "thinking": args.thinking,
                "temperature": 0.8,
                "seed": i,
            }
            with lock:
                in_flight[0] += 1
            r = stream_request(srv.host, srv.port, body, args.request_timeout)
            with lock:
                in_flight[0] -= 1
            results.append(r)

    ht = threading.Thread(target=health_loop, daemon=True)
    ht.start()
    t_start = time.perf_counter()
    ws = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    wall = time.perf_counter() - t_start
    stop_health.set()
    ht.join()

    ok = [r for r in results if r["error"] is None]
    errs = [r["error"] for r in results if r["error"] is not None]
    ttft = [r["ttft"] * 1e3 for r in ok if r["ttft"] is not None]
    itl = [g * 1e3 for r in ok for g in r["gaps"]]
    tokens = sum(r["tokens"] or 0 for r in ok)
    chunks = sum(r["chunks"] for r in ok)
    h_busy = [h[0] * 1e3 for h in health if h[1] and h[2]]
    h_all = [h[0] * 1e3 for h in health if h[2]]
    h_fail = sum(1 for h in health if not h[2])
    return {
        "conc": conc, "requests": len(results), "errors": errs, "ttft": ttft, "itl": itl,
        "tokens": tokens, "chunks": chunks, "wall": wall, "h_busy": h_busy, "h_all": h_all,
        "h_fail": h_fail,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "build/release/tools/dsv4-server"))
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-np", "--parallel", type=int, default=8, help="server slots")
    ap.add_argument("--concurrency", default="1,4,8", help="comma-separated levels")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per request (ignore_eos)")
    ap.add_argument("--requests-per-stream", type=int, default=4,
                    help="most requests each concurrent stream sends per level")
    ap.add_argument("--time-limit", type=float, default=60,
                    help="seconds per level after which streams start no new request")
    ap.add_argument("--request-timeout", type=float, default=120, help="socket timeout (s)")
    ap.add_argument("--health-interval", type=float, default=0.05)
    ap.add_argument("--thinking", action="store_true", help="thinking mode (default: chat mode)")
    ap.add_argument("--server-args", default="-c 1024 -t 2 -tb 2",
                    help="extra dsv4-server flags (split on spaces)")
    ap.add_argument("--log", default=None, help="server log file (default: a temp file)")
    args = ap.parse_args()

    levels = [int(x) for x in args.concurrency.split(",") if x]
    log_path = args.log or tempfile.mktemp(prefix="dsv4-server-load-", suffix=".log")
    srv = Server(args.bin, args.model, args.parallel, args.server_args.split(), log_path)
    print(f"server: {' '.join(srv.cmd)}", file=sys.stderr)
    print(f"server log: {log_path}", file=sys.stderr)
    rows = []
    counter = [0]
    status = None
    try:
        # Warm-up (not recorded): first-touch of the weights, thread start-up.
        w = stream_request(srv.host, srv.port, {
            "messages": [{"role": "user", "content": "warm up"}], "max_tokens": 8,
            "ignore_eos": True, "stream": True, "thinking": args.thinking}, args.request_timeout)
        if w["error"]:
            raise RuntimeError("warm-up failed: " + w["error"])
        for c in levels:
            print(f"level {c} ...", file=sys.stderr, flush=True)
            r = run_level(srv, c, args, counter)
            print(f"  {r['requests']} requests, {r['tokens']} tokens in {r['wall']:.1f} s, "
                  f"{len(r['errors'])} errors, {len(r['h_all'])} health samples "
                  f"({len(r['h_busy'])} all-busy, {r['h_fail']} failed)", file=sys.stderr, flush=True)
            for e in r["errors"][:3]:
                print("  error: " + e, file=sys.stderr)
            rows.append(r)
    finally:
        status = srv.stop()

    print(f"\nslots -np {args.parallel}; {args.max_tokens} tokens per request (ignore_eos, chat "
          f"mode{' thinking' if args.thinking else ''}); server flags `{args.server_args}`\n")
    print("| -np | concurrency | requests (errors) | p50 TTFT ms | p99 TTFT ms | p50 ITL ms | "
          "p99 ITL ms | tokens/chunks | gen tok/s | p50 /health ms | p99 /health ms | /health n |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        h = r["h_busy"]
        print(f"| {args.parallel} | {r['conc']} | {r['requests']} ({len(r['errors'])}) "
              f"| {pct(r['ttft'], 50):.1f} | {pct(r['ttft'], 99):.1f} "
              f"| {pct(r['itl'], 50):.1f} | {pct(r['itl'], 99):.1f} "
              f"| {r['tokens']}/{r['chunks']} | {r['tokens'] / r['wall']:.1f} "
              f"| {pct(h, 50):.2f} | {pct(h, 99):.2f} | {len(h)} |")
    print(f"\nserver exit status after SIGTERM: {status}")
    failed = status != 0 or any(r["errors"] for r in rows)
    if status != 0:
        print("ERROR: server did not exit 0 on SIGTERM", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
