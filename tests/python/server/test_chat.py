"""dsv4-server through the scripted backend: chat/completions with the official openai client."""
import gzip
import json
import pathlib

import pytest
import requests

from conftest import ROOT, canary, script, split_bytes

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]

TOOL_TEXT = ("I should call the tool.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
             "<｜DSML｜parameter name=\"city\" string=\"true\">Tokyo</｜DSML｜parameter>\n"
             "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
             "</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
MARKERS = ["</think>", "<think>", "｜DSML｜tool_calls", "|DSML|tool_calls", "<｜end▁of▁sentence｜>"]


def chat_both(server, messages, script_hdr, **kw):
    """Non-streamed response and the streamed chunks of the same scripted request."""
    c = server.client()
    whole = c.chat.completions.create(model="dsv4-test", messages=messages, extra_headers=script_hdr, **kw)
    chunks = list(c.chat.completions.create(model="dsv4-test", messages=messages, extra_headers=script_hdr,
                                            stream=True, stream_options={"include_usage": True}, **kw))
    return whole, chunks


def collect(chunks):
    content, reasoning, calls, finish = "", "", {}, None
    for ch in chunks:
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        content += d.content or ""
        reasoning += getattr(d, "reasoning_content", None) or ""
        for tc in d.tool_calls or []:
            e = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            e["id"] = tc.id or e["id"]
            if tc.function and tc.function.name:
                e["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                e["arguments"] += tc.function.arguments
        finish = ch.choices[0].finish_reason or finish
    return content, reasoning, [calls[i] for i in sorted(calls)], finish


def test_chat_reasoning_stream_equals_whole(scripted):
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "hi"}], script("Let me think.</think>Hello, world!"))
    m = whole.choices[0].message
    assert m.content == "Hello, world!"
    assert m.reasoning_content == "Let me think."
    assert whole.choices[0].finish_reason == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    content, reasoning, calls, finish = collect(chunks)
    assert (content, reasoning, calls, finish) == (m.content, m.reasoning_content, [], "stop")
    # include_usage: a last chunk with empty choices and usage, equal to the non-streamed usage
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_usage_and_timings_consistent(scripted):
    r = scripted.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "count"}]},
                      headers=script("a</think>one two three"))
    j = r.json()
    u, t = j["usage"], j["timings"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert t["predicted_n"] == u["completion_tokens"]
    assert t["prompt_n"] + t["cache_n"] == u["prompt_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] == t["cache_n"]
    for k in ["prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_ms", "predicted_per_token_ms",
              "predicted_per_second"]:
        assert t[k] >= 0
    tok = scripted.post("/tokenize", {"content": "a</think>one two three"}).json()["tokens"]
    assert u["completion_tokens"] == len(tok) + 1  # + EOS


def test_thinking_off_and_effort(scripted):
    c = scripted.client()
    r = c.chat.completions.create(model="dsv4-test", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers=script("Plain answer."),
                                  extra_body={"chat_template_kwargs": {"thinking": False}})
    assert r.choices[0].message.content == "Plain answer."
    assert getattr(r.choices[0].message, "reasoning_content", None) in (None, "")
    r = c.chat.completions.create(model="dsv4-test", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers=script("Plain again."), reasoning_effort="none")
    assert r.choices[0].message.content == "Plain again."

    def prompt(**kw):
        return scripted.post("/apply-template", {"messages": [{"role": "user", "content": "Hello"}], **kw}).json()["prompt"]
    assert prompt().endswith("<｜Assistant｜><think>")
    assert prompt(reasoning_effort="none").endswith("<｜Assistant｜></think>")
    assert prompt(chat_template_kwargs={"enable_thinking": False}).endswith("<｜Assistant｜></think>")
    assert "Reasoning Effort" in prompt(reasoning_effort="max")
    assert "Reasoning Effort" in prompt(reasoning_effort="xhigh")
    assert "Reasoning Effort" not in prompt(reasoning_effort="low")
    assert scripted.post("/apply-template", {"messages": [{"role": "user", "content": "x"}],
                                             "reasoning_effort": "bogus"}).status_code == 400


def test_tool_call_whole_and_streamed(scripted):
    msgs = [{"role": "user", "content": "Weather in Tokyo?"}]
    whole, chunks = chat_both(scripted, msgs, script(TOOL_TEXT), tools=TOOLS)
    ch = whole.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.reasoning_content == "I should call the tool."
    assert ch.message.content in (None, "")
    [call] = ch.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo", "days": 3}
    content, reasoning, calls, finish = collect(chunks)
    assert finish == "tool_calls" and reasoning == "I should call the tool." and content == ""
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Tokyo", "days": 3}
    # the arguments arrive as deltas separate from the header chunk
    arg_chunks = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls
                  and c.choices[0].delta.tool_calls[0].function.arguments]
    assert arg_chunks


def test_two_parallel_tool_calls(scripted):
    two = TOOL_TEXT.replace("</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
                            "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" "
                            "string=\"true\">Osaka</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "both"}], script(two), tools=TOOLS)
    calls = whole.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Tokyo", "Osaka"]
    assert len({c.id for c in calls}) == 2
    _, _, scalls, _ = collect(chunks)
    assert [json.loads(c["arguments"])["city"] for c in scalls] == ["Tokyo", "Osaka"]


MALFORMED = [
    # unterminated tool block
    "r</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Tok",
    # ASCII bars
    "r</think>\n\n<|DSML|tool_calls>\n<|DSML|invoke name=\"get_weather\">\n<|DSML|parameter name=\"city\" string=\"true\">Kyoto</|DSML|parameter>\n</|DSML|invoke>\n</|DSML|tool_calls>",
    # tool block before </think>
    "thinking\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Nara</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
    # missing </think>: all reasoning
    "only reasoning, never closed",
    # garbage inside the block, bad string attribute, duplicate parameter
    "r</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"maybe\">X</｜DSML｜parameter>\n<｜DSML｜parameter name=\"city\" string=\"true\">Y</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
    # repeated </think> and stray <think>, text after EOS
    "a</think>b</think><think>c",
    "invoke without block</think><｜DSML｜invoke name=\"x\">\n</｜DSML｜invoke>",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_dsml_never_breaks(scripted, text):
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "go"}], script(text), tools=TOOLS)
    m = whole.choices[0].message
    for field in (m.content or "", m.reasoning_content or ""):
        for mk in MARKERS:
            assert mk not in field, (mk, field)
    content, reasoning, calls, finish = collect(chunks)
    assert content == (m.content or "") and reasoning == (m.reasoning_content or "")
    assert len(calls) == len(m.tool_calls or [])
    for c in m.tool_calls or []:
        json.loads(c.function.arguments)
    assert finish == whole.choices[0].finish_reason


def test_stop_string_split_across_tokens(scripted):
    seg = ["x</think>The result is ", split_bytes("ST"), split_bytes("OP"), " and more"]
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "s"}], script(*seg), stop=["STOP"])
    assert whole.choices[0].message.content == "The result is "
    assert whole.choices[0].finish_reason == "stop"
    content, _, _, finish = collect(chunks)
    assert content == "The result is " and finish == "stop"
    # a stop string preceded by CJK, and one that is a prefix of a marker
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "s"}],
                              script("x</think>", split_bytes("東京終わり"), "tail"), stop=["終わ"])
    assert whole.choices[0].message.content == "東京"
    assert collect(chunks)[0] == "東京"
    whole, _ = chat_both(scripted, [{"role": "user", "content": "s"}], script("abc</think>def"), stop=["</thi"])
    assert whole.choices[0].message.content == ""


def test_cjk_and_emoji_split_across_tokens(scripted):
    text = "東京、大阪。🙂👍🏽 ok 𝄞"
    whole, chunks = chat_both(scripted, [{"role": "user", "content": "c"}],
                              script(split_bytes("思考"), "</think>", split_bytes(text)))
    assert whole.choices[0].message.content == text
    assert whole.choices[0].message.reasoning_content == "思考"
    content, reasoning, _, _ = collect(chunks)
    assert content == text and reasoning == "思考"


def test_completions_token_ids_and_stream(scripted):
    c = scripted.client()
    ids = scripted.post("/tokenize", {"content": "Hello world"}).json()["tokens"]
    r = c.completions.create(model="dsv4-test", prompt=[0] + ids, extra_headers=script(" continued text"))
    assert r.choices[0].text == " continued text" and r.choices[0].finish_reason == "stop"
    s = "".join(ch.choices[0].text for ch in c.completions.create(
        model="dsv4-test", prompt="Hello", stream=True, extra_headers=script(" continued text")) if ch.choices)
    assert s == " continued text"
    r = c.completions.create(model="dsv4-test", prompt="Hello", max_tokens=3, extra_headers=script(" a b c d e f"))
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_logprobs(scripted):
    r = scripted.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True,
                                               "top_logprobs": 3}, headers=script("a</think>b"))
    lp = r.json()["choices"][0]["logprobs"]["content"]
    assert len(lp) == r.json()["usage"]["completion_tokens"]
    assert all(len(e["top_logprobs"]) == 3 for e in lp)


def test_models_health_tokenize(scripted):
    m = scripted.client().models.list()
    assert [x.id for x in m.data] == ["dsv4-test"]
    assert requests.get(scripted.url + "/health").json() == {"status": "ok"}
    t = scripted.post("/tokenize", {"content": "Hello 世界", "with_pieces": True}).json()["tokens"]
    ids = [x["id"] for x in t]
    assert scripted.post("/detokenize", {"tokens": ids}).json()["content"] == "Hello 世界"
    # NUL bytes are ordinary text (T2)
    a = scripted.post("/tokenize", {"content": "a\u0000b"}).json()["tokens"]
    b = scripted.post("/tokenize", {"content": "ab"}).json()["tokens"]
    assert len(a) != len(b)
    r = scripted.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "\u0000x\u0000"}]},
                      headers=script("n</think>ok"))
    assert r.status_code == 200


def test_apply_template_two_turn_tool_golden(scripted):
    """A two-turn tool conversation rendered through the OpenAI request shape equals the official encoder."""
    rows = [json.loads(l) for l in gzip.open(ROOT / "tests/fixtures/chat/goldens.jsonl.gz")]
    [g] = [r for r in rows if r["kind"] == "render" and r["id"] == "C2_tool_then_user" and r["revision"] == "preview"
           and r["thinking"] and r["reasoning_effort"] is None and not r["vllm_additions"]]
    msgs, tools = [], None
    for m in g["messages"]:
        m = dict(m)
        if "tools" in m:
            tools = m.pop("tools")
        if "reasoning" in m:
            m["reasoning_content"] = m.pop("reasoning")
        msgs.append(m)
    r = scripted.post("/apply-template", {"messages": msgs, "tools": tools})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"] == g["rendered"]


def test_isolation_concurrent_scripts(scripted):
    """S1: concurrent requests, each with its own secret; each answer holds only its own."""
    import concurrent.futures as cf
    scripted.config(decode_delay_ms=2)
    try:
        def one(i):
            secret = f"K-{4821 + i}"
            r = scripted.post("/v1/chat/completions",
                              {"messages": [{"role": "user", "content": f"the code is {secret}; repeat it"}]},
                              headers=script(f"ok</think>The code is {secret}."))
            return secret, r.json()["choices"][0]["message"]["content"]
        with cf.ThreadPoolExecutor(8) as ex:
            for secret, content in ex.map(one, range(8)):
                assert content == f"The code is {secret}."
    finally:
        scripted.config(decode_delay_ms=0)
    canary(scripted)
