"""reliability.md §C.4 S5/S6 and §C.5 R1, R7, R9 against dsv4-server (scripted backend unless noted).
Each ends with the canary: the next request on the same server answers correctly."""
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import ROOT, Server, _bin_dir, canary, script

MSG = [{"role": "user", "content": "hi"}]


def _fds_threads(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        threads = int(next(l for l in f if l.startswith("Threads:")).split()[1])
    return fds, threads


def test_s5_every_slot_reaches_the_context_end(start_server):
    """S5: long generations in every slot of a small context: each ends with finish_reason
    "length", no stall, and the server answers the next request."""
    s = start_server("-np", "2", "-c", "96")
    def one(i):
        r = s.post("/v1/completions", {"prompt": [5 + i] * 8, "max_tokens": 4096, "temperature": 0})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["finish_reason"], r.json()["usage"]["total_tokens"]
    with cf.ThreadPoolExecutor(4) as ex:
        for finish, total in ex.map(one, range(4)):
            assert finish == "length" and total == 96
    canary(s)


def test_s6_parser_state_is_per_request(scripted):
    """S6: reasoning / tool-call / stop parsing gives the same result at concurrency 1 and 8."""
    def one(i):
        text = (f"thinking {i}</think>"
                f"<｜DSML｜tool_calls><｜DSML｜invoke name=\"f{i}\"><｜DSML｜parameter name=\"x\" "
                f"string=\"false\">{i}</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜tool_calls>")
        body = {"messages": MSG, "stream": True, "max_tokens": 200,
                "tools": [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}}]}
        r = scripted.post("/v1/chat/completions", body, headers=script(text), stream=True)
        parts = []
        for raw in r.iter_lines():
            line = raw.decode("utf-8")
            if line.startswith("data: ") and line != "data: [DONE]":
                for c in json.loads(line[6:]).get("choices", []):
                    d = c.get("delta", {})
                    parts.append((d.get("reasoning_content"), d.get("content"),
                                  json.dumps(d.get("tool_calls"), sort_keys=True) if d.get("tool_calls") else None,
                                  c.get("finish_reason")))
        # tool-call ids differ per request by design: compare without them
        return [(a, b, (json.dumps([{k: v for k, v in t.items() if k != "id"} for t in json.loads(c)])
                        if c else None), f) for a, b, c, f in parts]
    seq = [one(i) for i in range(8)]
    scripted.config(decode_delay_ms=1)
    try:
        with cf.ThreadPoolExecutor(8) as ex:
            par = list(ex.map(one, range(8)))
    finally:
        scripted.config(decode_delay_ms=0)
    assert par == seq
    canary(scripted)


def test_r1_oom_at_load_is_a_clean_error(tmp_path):
    """R1: slots that cannot be allocated: a clean error naming what was requested, exit ≠ 0.
    (The real server on the tiny fixture, 256 slots of a 16M-token context.)"""
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1")
    p = subprocess.run([str(_bin_dir() / "dsv4-server"), "-m", str(ROOT / "tests/fixtures/tiny/model.gguf"),
                        "-c", str((1 << 24) - 1), "--parallel", "256", "--port", "0"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode != 0
    err = p.stderr + p.stdout
    assert "memory" in err.lower() and "256" in err, err[-2000:]


def test_r7_no_fd_or_thread_growth(start_server):
    """R7 (short soak): 300 mixed requests — successes, 400s, streams, client disconnects — leave the
    server's open file descriptors and threads where they were."""
    s = start_server("-np", "2", "-c", "512")
    for _ in range(20):  # warm up the HTTP worker pool
        s.post("/v1/chat/completions", {"messages": MSG, "max_tokens": 4}, headers=script("a</think>b"))
    time.sleep(0.5)
    fds0, th0 = _fds_threads(s.proc.pid)
    body = json.dumps({"messages": MSG, "stream": True, "max_tokens": 50}).encode()
    for i in range(300):
        k = i % 4
        if k == 0:
            assert s.post("/v1/chat/completions", {"messages": MSG, "max_tokens": 4},
                          headers=script("a</think>b")).status_code == 200
        elif k == 1:
            assert s.post("/v1/chat/completions", {"messages": MSG, "temperature": -1}).status_code == 400
        elif k == 2:
            r = s.post("/v1/chat/completions", {"messages": MSG, "stream": True, "max_tokens": 8},
                       headers=script("x</think>yz"), stream=True)
            assert r.status_code == 200 and b"[DONE]" in r.content
        else:  # disconnect mid-request
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            c.close()
    time.sleep(1.0)
    fds1, th1 = _fds_threads(s.proc.pid)
    assert fds1 <= fds0 + 4, (fds0, fds1)
    assert th1 <= th0 + 4, (th0, th1)
    canary(s)


def test_r9_sigpipe_and_eintr(start_server):
    """R9: SIGPIPE is ignored (a client that resets mid-stream does not kill the server), and
    signals that interrupt syscalls (SIGUSR1 → EINTR in blocked reads/writes) change nothing."""
    s = start_server("-np", "2", "-c", "512")
    s.config(decode_delay_ms=5)
    try:
        body = json.dumps({"messages": MSG, "stream": True, "max_tokens": 300}).encode()
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            c.recv(64)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST: the server's next write gets EPIPE/SIGPIPE
        assert s.alive()
    finally:
        s.config(decode_delay_ms=0)
    canary(s)
