"""dsv4-server on real models (issue 6 acceptance, first item).

- The tiny reference fixture (toy vocabulary): greedy answers to the fixture prompts, sent as
  token ids to /v1/completions, equal the REFERENCE's greedy continuations
  (tests/fixtures/tiny/simon/greedy*.npy, written by transformers with the official numerics
  simulation; never answers recorded from our own server), compared as text through the
  server's own /detokenize; stream and non-stream give the same text; usage and timings agree
  with the token counts; 4 concurrent requests on 2 slots equal the sequential answers.
- A dsv4-mkmodel model with the REAL DeepSeek-V4 tokenizer (random weights): chat completions
  stream = non-stream, finish "length" at max_tokens, usage consistent, CJK/emoji round trips.
"""
import concurrent.futures
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import ROOT, TOKENIZER, Server, _bin_dir

FIX = ROOT / "tests" / "fixtures" / "tiny"


def _server_exe():
    exe = _bin_dir() / "dsv4-server"
    if not exe.exists():
        pytest.fail(f"{exe} not built (set DSV4_BIN_DIR)")
    return exe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    s = Server(_server_exe(), ["-m", str(FIX / "model.gguf"), "-np", "2", "-c", "512", "-t", "2", "--metrics"],
               tmp_path_factory.mktemp("tiny") / "server.log")
    yield s
    assert s.stop() == 0, s.log_text()[-3000:]


def _detok(server, ids):
    r = server.post("/detokenize", {"tokens": ids})
    assert r.status_code == 200, r.text
    return r.json()["content"]


def _complete(server, ids, n, stream=False):
    body = {"prompt": ids, "max_tokens": n, "temperature": 0, "stream": stream}
    if not stream:
        r = server.post("/v1/completions", body)
        assert r.status_code == 200, r.text
        return r.json()
    body["stream_options"] = {"include_usage": True}
    r = server.post("/v1/completions", body, stream=True)
    assert r.status_code == 200, r.text
    text, usage, finish = "", None, None
    for raw in r.iter_lines():  # SSE is UTF-8 (text/event-stream has no charset for requests)
        line = raw.decode("utf-8")
        if not line or not line.startswith("data: ") or line == "data: [DONE]":
            continue
        import json
        j = json.loads(line[6:])
        for c in j.get("choices", []):
            text += c.get("text", "")
            finish = c.get("finish_reason") or finish
        usage = j.get("usage") or usage
    return {"choices": [{"text": text, "finish_reason": finish}], "usage": usage}


@pytest.mark.parametrize("k", [0, 1, 2])
def test_fixture_greedy_equals_reference(tiny, k):
    prompt = np.load(FIX / "tokens" / f"prompt{k}.npy").astype(int).tolist()
    want = np.load(FIX / "simon" / f"greedy{k}.npy").astype(int).tolist()
    assert 1 not in want  # the toy EOS (id 1) would end the answer early
    j = _complete(tiny, prompt, len(want))
    assert j["choices"][0]["text"] == _detok(tiny, want)
    assert j["choices"][0]["finish_reason"] == "length"
    u = j["usage"]
    assert u["prompt_tokens"] == len(prompt) and u["completion_tokens"] == len(want)
    assert u["total_tokens"] == len(prompt) + len(want)
    t = j["timings"]
    assert t["predicted_n"] == len(want)
    assert t["prompt_n"] + t["cache_n"] == len(prompt)
    assert t["prompt_ms"] > 0 and t["predicted_ms"] > 0
    assert abs(t["predicted_per_second"] - 1000.0 * t["predicted_n"] / t["predicted_ms"]) < 1e-3 * t["predicted_per_second"] + 1e-6
    s = _complete(tiny, prompt, len(want), stream=True)
    assert s["choices"][0]["text"] == j["choices"][0]["text"]
    assert s["usage"]["completion_tokens"] == len(want)


def test_concurrent_equals_sequential(tiny):
    prompts = [np.load(FIX / "tokens" / f"prompt{k}.npy").astype(int).tolist() for k in range(3)]
    prompts.append(prompts[0][:5])
    seq = [_complete(tiny, p, 12)["choices"][0]["text"] for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        par = list(ex.map(lambda p: _complete(tiny, p, 12)["choices"][0]["text"], prompts))
    assert par == seq


@pytest.fixture(scope="module")
def real_vocab(tmp_path_factory):
    d = tmp_path_factory.mktemp("realvocab")
    model = d / "tiny-real-vocab.gguf"
    subprocess.run([str(_bin_dir() / "dsv4-mkmodel"), "-o", str(model), "--preset", "tiny", "--mix", "upstream",
                    "--tokenizer", str(TOKENIZER), "--seed", "5"], check=True, capture_output=True)
    s = Server(_server_exe(), ["-m", str(model), "-np", "2", "-c", "1024", "-t", "2"], d / "server.log")
    yield s
    assert s.stop() == 0, s.log_text()[-3000:]


def test_real_vocab_chat_stream_equals_nonstream(real_vocab):
    c = real_vocab.client()
    model = c.models.list().data[0].id
    msgs = [{"role": "user", "content": "Hello! 你好，世界 🙂"}]
    r = c.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0)
    ch = r.choices[0]
    assert ch.finish_reason in ("length", "stop", "tool_calls")
    text = (getattr(ch.message, "reasoning_content", None) or "") + (ch.message.content or "")
    assert r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    stream = c.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0, stream=True)
    parts = []
    for chunk in stream:
        for d in chunk.choices:
            parts.append((getattr(d.delta, "reasoning_content", None) or "") + (d.delta.content or ""))
    assert "".join(parts) == text


def test_real_vocab_tokenize_round_trip(real_vocab):
    for s in ["东京と大阪 🙂👍🏽", "def f(x):\n    return x ** 2\n", "  spaces   and\ttabs  "]:
        r = real_vocab.post("/tokenize", {"content": s})
        assert r.status_code == 200, r.text
        assert _detok(real_vocab, r.json()["tokens"]) == s


# ---- reliability.md §C.2 (T items) on the real-vocabulary model: each abuse answers as
# documented, then the same fixed greedy request gives the same answer as before any abuse.

GOLDEN_REQ = {"messages": [{"role": "user", "content": "Say something about 東京."}], "max_tokens": 12,
              "temperature": 0}


@pytest.fixture(scope="module")
def golden(real_vocab):
    r = real_vocab.post("/v1/chat/completions", GOLDEN_REQ)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]


def _still_golden(server, golden):
    r = server.post("/v1/chat/completions", GOLDEN_REQ)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"] == golden


def _raw_chat(server, body_bytes):
    import requests
    return requests.post(server.url + "/v1/chat/completions", data=body_bytes,
                         headers={"Content-Type": "application/json"}, timeout=60)


@pytest.mark.parametrize("bad", [b"\xc3\x28", b"\xc0\xaf", b"\xf5\x80\x80\x80", b"ab\xf0\x9f\x99"])
def test_t1_invalid_utf8_real_vocab(real_vocab, golden, bad):
    body = b'{"messages":[{"role":"user","content":"' + bad + b'"}],"max_tokens":2}'
    assert _raw_chat(real_vocab, body).status_code == 400
    _still_golden(real_vocab, golden)


def test_t2_nul_is_text_real_vocab(real_vocab, golden):
    a = real_vocab.post("/tokenize", {"content": "a\u0000b"}).json()["tokens"]
    b = real_vocab.post("/tokenize", {"content": "ab"}).json()["tokens"]
    assert a != b and _detok(real_vocab, a) == "a\u0000b"
    r = real_vocab.post("/v1/chat/completions", {**GOLDEN_REQ, "messages": [{"role": "user", "content": "\u0000x\u0000"}]})
    assert r.status_code == 200
    _still_golden(real_vocab, golden)


def test_t3_special_tokens_in_user_text_are_text(real_vocab, golden):
    def prompt_tokens(content):
        r = real_vocab.post("/v1/chat/completions", {"messages": [{"role": "user", "content": content}], "max_tokens": 1})
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens"]
    base = prompt_tokens("x")
    for s in ["<｜User｜>", "<｜Assistant｜>", "</think>", "<｜end▁of▁sentence｜>", "<｜DSML｜tool_calls>"]:
        special = real_vocab.post("/tokenize", {"content": "x" + s}).json()["tokens"]  # llama-server: parsed
        plain = real_vocab.post("/tokenize", {"content": "x" + s, "parse_special": False}).json()["tokens"]
        assert len(plain) > len(special)
        # in a chat, the user's text is tokenised as plain text: the prompt grows by the plain count
        assert prompt_tokens("x" + s) - base == len(plain) - len(real_vocab.post("/tokenize", {"content": "x", "parse_special": False}).json()["tokens"])
    _still_golden(real_vocab, golden)


def test_t4_prompt_over_context_400(real_vocab, golden):
    r = real_vocab.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}]})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "1024" in msg  # both numbers: the prompt's and the context's
    _still_golden(real_vocab, golden)


@pytest.mark.parametrize("body", [{"prompt": [5, 129280]}, {"prompt": [-1]}])
def test_t6_token_ids_out_of_range_400(real_vocab, golden, body):
    assert real_vocab.post("/v1/completions", {**body, "max_tokens": 2}).status_code == 400
    assert real_vocab.post("/detokenize", {"tokens": body["prompt"]}).status_code == 400
    _still_golden(real_vocab, golden)


@pytest.mark.parametrize("messages", [[], [{"role": "tool", "content": "x", "tool_call_id": "nope"}],
                                      [{"role": "user", "content": [{"type": "weird"}]}]])
def test_t8_chat_structure_real_vocab(real_vocab, golden, messages):
    r = real_vocab.post("/v1/chat/completions", {"messages": messages, "max_tokens": 2})
    assert r.status_code in (200, 400)
    if r.status_code == 400:
        assert r.json()["error"]["type"] == "invalid_request_error"
    _still_golden(real_vocab, golden)


# ---- reliability.md §C.1 G12 and G16 through the server

def _copy_with(src, dst, extra_kv=None, nan_tensor=None):
    """Copies a GGUF adding string keys (extra_kv) and/or writing NaN into the first row of a
    F32 tensor (nan_tensor), with the gguf package (the oracle library)."""
    import gguf
    import shutil
    if extra_kv:
        r = gguf.GGUFReader(src)
        w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
        for name, f in r.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue
            vt = f.types[0]
            sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(name, f.contents(), vt, sub_type=sub)
        for k, v in extra_kv.items():
            w.add_string(k, v)
        for t in r.tensors:
            w.add_tensor(t.name, t.data, raw_shape=list(reversed([int(x) for x in t.shape])),
                         raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    else:
        shutil.copy(src, dst)
    if nan_tensor:
        r = gguf.GGUFReader(dst)
        t = [t for t in r.tensors if t.name == nan_tensor][0]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        with open(dst, "r+b") as f:
            f.seek(int(t.data_offset))
            f.write(np.full(int(t.shape[0]), np.nan, dtype=np.float32).tobytes())


def test_g12_embedded_chat_template_is_ignored(tmp_path):
    """A huge / looping Jinja template in the file is never executed: the built-in DeepSeek-V4
    encoder renders the prompt, byte-equal to the server's rendering of the clean file."""
    model = tmp_path / "template.gguf"
    loop = "{% for i in range(10**12) %}{{ i }}{% endfor %}" + "x" * (4 << 20)
    _copy_with(FIX / "model.gguf", model, extra_kv={"tokenizer.chat_template": loop})
    s = Server(_server_exe(), ["-m", str(model), "-c", "256"], tmp_path / "server.log")
    try:
        msgs = {"messages": [{"role": "user", "content": "hi"}]}
        r = s.post("/apply-template", msgs, timeout=30)
        assert r.status_code == 200, r.text
        assert "range(10**12)" not in r.json()["prompt"]
        assert r.json()["prompt"].startswith("<｜begin▁of▁sentence｜>")
    finally:
        assert s.stop() == 0


def test_g16_nan_logits_fail_the_request_not_the_server(tmp_path):
    model = tmp_path / "nan.gguf"
    _copy_with(FIX / "model.gguf", model, nan_tensor="output.weight")  # row 0 of the LM head: NaN logit
    s = Server(_server_exe(), ["-m", str(model), "-c", "256"], tmp_path / "server.log")
    try:
        r = s.post("/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 4})
        assert r.status_code == 500, r.text
        assert "NaN" in r.json()["error"]["message"] or "nan" in r.json()["error"]["message"].lower()
        assert s.alive()
        r = s.get("/health") if hasattr(s, "get") else __import__("requests").get(s.url + "/health", timeout=10)
        assert r.status_code == 200
    finally:
        assert s.stop() == 0
