"""Fixtures for the dsv4-server tests: start the server binaries on a free loopback port.

- `scripted` (module scope): dsv4-server-scripted, the real HTTP layer over the TEST-ONLY
  ScriptedEngine with the real DeepSeek-V4 tokenizer. Tests script each generation with the
  `X-Dsv4-Script` header (see `script()`).
- `start_server`: start another instance with custom flags (auth, small queue, drain tests).
- `model_server`: HOOK FOR THE REAL-MODEL TESTS (fixture greedy answers, issue 6 acceptance).
  Starts `dsv4-server` on the model given by DSV4_SERVER_MODEL (a GGUF or safetensors dir);
  skips when it is not set or the binary is missing. Extra flags: DSV4_SERVER_ARGS.
Binaries: DSV4_BIN_DIR (default build/release/tools); the scripted server lives at
<bin_dir>/../tests/server/dsv4-server-scripted.
"""
import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOKENIZER = ROOT / "third_party" / "tokenizer" / "deepseek-v4" / "tokenizer.json"


def _bin_dir():
    return pathlib.Path(os.environ.get("DSV4_BIN_DIR", ROOT / "build" / "release" / "tools"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, exe, args, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([str(exe), "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_text()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("server did not come up: " + self.log_text())
            time.sleep(0.05)

    def log_text(self):
        self.log.flush()
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def client(self, **kw):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0,
                             timeout=kw.pop("timeout", 60), **kw)

    def post(self, path, body=None, **kw):
        kw.setdefault("timeout", 60)
        return requests.post(self.url + path, json=body, **kw)

    def config(self, **cfg):
        r = requests.post(self.url + "/test/config", data=json.dumps(cfg), timeout=10)
        assert r.status_code == 200

    def metrics(self):
        out = {}
        for line in requests.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.split()
                out[k] = float(v)
        return out

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def script(*segments, eos=True):
    """X-Dsv4-Script header: strings are tokenized as model output (</think>, ｜DSML｜ become their
    added tokens), ints are token ids, {"bytes": "e4b8"} gives single-byte tokens."""
    return {"X-Dsv4-Script": json.dumps({"segments": list(segments), "eos": eos})}


def split_bytes(text):
    """A script segment emitting `text` one byte per token (splits every UTF-8 character)."""
    return {"bytes": text.encode().hex()}


@pytest.fixture(scope="session")
def scripted_exe():
    exe = _bin_dir().parent / "tests" / "server" / "dsv4-server-scripted"
    if not exe.exists():
        pytest.fail(f"{exe} not built (set DSV4_BIN_DIR)")
    return exe


@pytest.fixture(scope="session")
def start_server(scripted_exe, tmp_path_factory):
    started = []

    def start(*args, exe=None):
        log = tmp_path_factory.mktemp("srv") / "server.log"
        s = Server(exe or scripted_exe, ["--tokenizer", str(TOKENIZER), *args], log)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def scripted(start_server):
    s = start_server("-np", "2", "-c", "1024", "--metrics", "--alias", "dsv4-test", "--sse-ping", "0.2")
    yield s
    assert s.alive(), "the server died during the module: " + s.log_text()[-4000:]


CANARY_TEXT = "Canary reasoning.</think>The canary answer: 東京 🙂"


def canary(server):
    """The canary request: a fresh scripted chat that must return the golden split exactly."""
    r = server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "canary?"}], "max_tokens": 64},
                    headers=script(CANARY_TEXT))
    assert r.status_code == 200, r.text
    msg = r.json()["choices"][0]["message"]
    assert msg["reasoning_content"] == "Canary reasoning."
    assert msg["content"] == "The canary answer: 東京 🙂"


# ---------------------------------------------------------------- real model hook (the lead's)

@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """HOOK: dsv4-server on a real model (DSV4_SERVER_MODEL). Used by the fixture-greedy tests."""
    model = os.environ.get("DSV4_SERVER_MODEL")
    exe = _bin_dir() / "dsv4-server"
    if not model or not exe.exists():
        pytest.skip("set DSV4_SERVER_MODEL (and build dsv4-server) for the real-model server tests")
    args = ["-m", model, *shlex.split(os.environ.get("DSV4_SERVER_ARGS", "-c 2048 -np 2 --metrics"))]
    s = Server(exe, args, tmp_path_factory.mktemp("model-srv") / "server.log")
    yield s
    assert s.stop() == 0
