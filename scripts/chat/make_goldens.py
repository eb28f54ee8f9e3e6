#!/usr/bin/env python3
"""Golden prompts and parses for src/chat, produced by RUNNING the official DeepSeek-V4 encoder.

The encoder (`encoding_dsv4.py`, vendored unchanged by vLLM as
`vllm/tokenizers/deepseek_v4_encoding.py`) is never copied into this repository. Fetch the two
revisions from PyPI into a scratch folder and point this script at them:

  pip download --no-deps vllm==0.20.0 -d /tmp/vllm/v0.20.0   # April preview (has the parser)
  pip download --no-deps vllm==0.33.0 -d /tmp/vllm/v0.33.0   # 0731 reasoning-effort prefixes
  unzip -o /tmp/vllm/v0.20.0/*.whl vllm/tokenizers/deepseek_v4_encoding.py -d /tmp/vllm/x0.20.0
  unzip -o /tmp/vllm/v0.33.0/*.whl vllm/tokenizers/deepseek_v4_encoding.py -d /tmp/vllm/x0.33.0

(vllm 0.24.0 carries the same preview file as 0.20.0, byte-identical.) The script needs the
`regex` package (the preview parser imports it); scripts/reference/.venv has it.

  scripts/reference/.venv/bin/python scripts/chat/make_goldens.py \
      --preview /tmp/vllm/x0.20.0/vllm/tokenizers/deepseek_v4_encoding.py \
      --r0731   /tmp/vllm/x0.33.0/vllm/tokenizers/deepseek_v4_encoding.py

Writes tests/fixtures/chat/goldens.jsonl.gz (one JSON object per line) and
tests/fixtures/chat/provenance.json (package, version, path, sha256 of each encoder file).

Record kinds:
  {"kind":"render","id","revision","messages","thinking","drop_thinking","reasoning_effort",
   "vllm_additions","rendered"}
  {"kind":"parse","id","thinking","text","parsed":{content,reasoning,tool_calls:[{name,arguments}]}}
"""
import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


PREVIEW_SHA256 = "582f735bf75ad5fbe2b4a8801d8280a65ff0e41175874249bd62433e78c487ff"
R0731_SHA256 = "aa407637bd2e58f20a16f781ea0bc519d06f74bed49deadaecb5aa5756d7230e"


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- tools / schemas
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Recherche sur le web — « exact » phrases, 日本語 OK, emoji 🔍",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "line1\nline2\t\"quoted\" back\\slash /slash \u0001 \u007f"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
        "score": {"type": "number", "default": 0.5, "exclusiveMinimum": 1e-07, "big": 1e16, "huge": 1.5e300,
                  "neg": -0.0, "tiny": 5e-324, "thou": 1000000000000000.0, "third": 0.3333333333333333},
        "filters": {"type": "object", "properties": {"lang": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": False},
        "safe": {"type": "boolean", "default": True},
        "nothing": {"type": ["string", "null"], "default": None}},
        "required": ["query"]}}}
CALC = {"type": "function", "function": {
    "name": "calc", "description": "",
    "parameters": {"zeta": 1, "type": "object", "alpha": {}, "properties": {"expr": {"type": "string"},
                                                                        "vars": {"type": "object"},
                                                                        "list": {"type": "array"}}}}}
NOPARAMS = {"type": "function", "function": {"name": "now", "description": "Current time"}}
# Nested objects, arrays of objects, enums, nullable unions, $defs-style refs, non-ASCII descriptions.
BOOKING = {"type": "function", "function": {
    "name": "book_trip", "description": "予約する — réserver un voyage ✈️ (Бронирование)",
    "parameters": {"type": "object", "properties": {
        "travellers": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
            "name": {"type": "string", "description": "氏名（全角可）"},
            "age": {"type": ["integer", "null"]},
            "class": {"type": "string", "enum": ["economy", "premium", "business", "一等"]}},
            "required": ["name"]}},
        "route": {"type": "object", "properties": {
            "from": {"$ref": "#/$defs/airport"}, "to": {"$ref": "#/$defs/airport"},
            "via": {"anyOf": [{"$ref": "#/$defs/airport"}, {"type": "null"}], "default": None}}},
        "dates": {"type": "array", "items": {"type": "string", "format": "date"}, "maxItems": 2},
        "flex_days": {"type": "integer", "enum": [0, 1, 3, 7]},
        "notes": {"type": ["string", "null"], "description": "備考 / 비고 / ملاحظات"}},
        "required": ["travellers", "route"],
        "$defs": {"airport": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["HND", "CDG"]}}}}}
TRANSLATE = {"type": "function", "function": {
    "name": "translate", "description": "翻訳 · 번역 · ترجمة · अनुवाद",
    "parameters": {"type": "object", "properties": {
        "text": {"type": "string"},
        "target": {"type": "string", "enum": ["ja", "zh-Hans", "ko", "ar", "hi"]},
        "formality": {"type": ["string", "null"], "enum": ["formal", "informal", None]},
        "glossary": {"type": "array", "items": {"type": "array", "items": {"type": "string"},
                                                "minItems": 2, "maxItems": 2}}},
        "required": ["text", "target"]}, "strict": True}}


def tc(id_, name, args, as_string=True):
    return {"id": id_, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}


SYS = {"role": "system", "content": "You are a helpful assistant."}


def u(c, **kw):
    m = {"role": "user", "content": c}
    m.update(kw)
    return m


def a(c, reasoning=None, tool_calls=None, **kw):
    m = {"role": "assistant", "content": c}
    if reasoning is not None:
        m["reasoning"] = reasoning
    if tool_calls is not None:
        m["tool_calls"] = tool_calls
    m.update(kw)
    return m


def tool(id_, c):
    return {"role": "tool", "tool_call_id": id_, "content": c}


def conversations():
    C = []
    C.append(("A_chat_hello", [SYS, u("Hello")]))
    C.append(("no_system", [u("Hi there")]))
    C.append(("empty_user", [u("")]))
    C.append(("B_two_turns", [SYS, u("What is 2+2?"), a("4", reasoning="2+2=4"), u("And 3+3?")]))
    C.append(("three_turns", [SYS, u("q1"), a("a1", reasoning="r1"), u("q2"), a("a2", reasoning="r2"), u("q3")]))
    C.append(("trailing_assistant", [SYS, u("Hello"), a("Hi!", reasoning="greet")]))
    C.append(("trailing_assistant_wo_eos", [SYS, u("Hello"), a("Hi, I am", reasoning="greet", wo_eos=True)]))
    C.append(("assistant_null_content", [u("x"), a(None, reasoning="r"), u("y")]))
    C.append(("system_in_middle", [SYS, u("one"), a("ack"), {"role": "system", "content": "New rules: be brief."},
                                   u("two")]))
    C.append(("two_systems_top", [SYS, {"role": "system", "content": "Second system."}, u("hey")]))
    C.append(("system_null_content_tools", [{"role": "system", "content": None, "tools": [WEATHER]}, u("w?")]))
    C.append(("unicode_content", [SYS, u("日本語のテキスト、中文，한국어 — emoji 👩‍👩‍👧 and \u0301 combining"),
                                  a("はい", reasoning="考える"), u("続けて")]))
    C.append(("special_lookalikes_in_user", [u("I typed <｜User｜> and </think> and <｜DSML｜tool_calls> here")]))
    C.append(("C1_tool_call", [dict(SYS, tools=[WEATHER]), u("Weather in Tokyo?"),
                               a("", reasoning="I should call the tool.",
                                 tool_calls=[tc("call_1", "get_weather", {"city": "Tokyo", "days": 3})]),
                               tool("call_1", '{"temp_c": 21, "sky": "clear"}')]))
    C.append(("C2_tool_then_user", C[-1][1] + [a("It is 21°C and clear in Tokyo.", reasoning="Tool says 21C clear."),
                                                 u("Thanks! And Osaka?")]))
    C.append(("D_parallel_reorder", [dict(SYS, tools=[WEATHER]), u("Tokyo and Osaka?"),
                                     a("", reasoning="two calls", tool_calls=[
                                         tc("a", "get_weather", {"city": "Tokyo"}),
                                         tc("b", "get_weather", {"city": "Osaka"})]),
                                     tool("b", "Osaka: 19C"), tool("a", "Tokyo: 21C")]))
    C.append(("three_results_reorder", [dict(SYS, tools=[WEATHER, SEARCH]), u("go"),
                                        a("Let me check.", tool_calls=[tc("x1", "search", {"query": "q"}),
                                                                      tc("x2", "get_weather", {"city": "Paris"}),
                                                                      tc("x3", "search", {"query": "r", "top_k": 2})]),
                                        tool("x3", "R3"), tool("x1", "R1"), tool("x2", "R2"), u("and summarise")]))
    C.append(("tool_result_unknown_id", [dict(SYS, tools=[WEATHER]), u("go"),
                                         a("", tool_calls=[tc("k1", "get_weather", {"city": "A"}),
                                                           tc("k2", "get_weather", {"city": "B"})]),
                                         tool("zz", "unknown"), tool("k2", "B!"), tool("k1", "A!")]))
    C.append(("tool_result_list_content", [dict(SYS, tools=[WEATHER]), u("go"),
                                           a("", tool_calls=[tc("c1", "get_weather", {"city": "A"})]),
                                           {"role": "tool", "tool_call_id": "c1",
                                            "content": [{"type": "text", "text": "part one"},
                                                        {"type": "image", "url": "x"},
                                                        {"type": "text", "text": "part two"}]}]))
    C.append(("tool_results_then_user_text", [dict(SYS, tools=[WEATHER]), u("go"),
                                              a("", tool_calls=[tc("c1", "get_weather", {"city": "A"})]),
                                              tool("c1", "sunny"), u("also, in F please")]))
    C.append(("arg_types", [dict(SYS, tools=[SEARCH, CALC]), u("compute"),
                            a("", reasoning="typed args", tool_calls=[
                                tc("t1", "calc", {"expr": "1+2 < 4 && \"q\" </｜DSML｜parameter>", "vars": {"x": 1, "y": [1.5, None, True]},
                                                  "list": [1, 2]}),
                                tc("t2", "search", {"query": "", "top_k": 3, "score": 0.1, "safe": False,
                                                    "nothing": None, "filters": {"lang": ["ja", "日本"]}}),
                                tc("t3", "calc", {"expr": "true"})]),
                            tool("t1", "3"), tool("t2", "none"), tool("t3", "ok")]))
    C.append(("args_as_dict", [dict(SYS, tools=[CALC]), u("c"),
                               a("", tool_calls=[tc("d1", "calc", {"expr": "x", "list": [1.0, 2e-9, 3e21]},
                                                    as_string=False)]),
                               tool("d1", "done")]))
    C.append(("args_string_with_floats", [dict(SYS, tools=[CALC]), u("c"),
                                          a("", tool_calls=[{"id": "f1", "type": "function", "function": {
                                              "name": "calc", "arguments": '{"list": [1.0, 1e5, 0.1, 100000000000000000000.0, -2.50], "expr": "é\\u00e9\\n"}'}}]),
                                          tool("f1", "done")]))
    C.append(("no_param_tool", [dict(SYS, tools=[NOPARAMS]), u("time?"),
                                a("", tool_calls=[tc("n1", "now", {})]), tool("n1", "12:00")]))
    C.append(("content_and_tool_calls", [dict(SYS, tools=[WEATHER]), u("w"),
                                         a("Checking now.", reasoning="r", tool_calls=[tc("w1", "get_weather", {"city": "Rome", "days": 2})]),
                                         tool("w1", "hot"), a("Hot in Rome.", reasoning="r2")]))
    C.append(("multi_tool_rounds", [dict(SYS, tools=[WEATHER, SEARCH]), u("plan a trip"),
                                    a("", reasoning="first", tool_calls=[tc("r1", "search", {"query": "trip"})]),
                                    tool("r1", "results"),
                                    a("", reasoning="second", tool_calls=[tc("r2", "get_weather", {"city": "Nice"})]),
                                    tool("r2", "mild"),
                                    a("Go to Nice.", reasoning="done"), u("thanks, and budget?")]))
    C.append(("tools_no_system_content", [{"role": "system", "content": "", "tools": [WEATHER, NOPARAMS, CALC]},
                                          u("hi")]))
    C.append(("response_format", [dict(SYS, response_format={"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "number"}},
                                     "required": ["answer"]}}}), u("Reply in JSON")]))
    C.append(("response_format_and_tools", [dict(SYS, tools=[WEATHER], response_format={"type": "json_object"}),
                                            u("w?")]))
    C.append(("developer", [SYS, {"role": "developer", "content": "Dev instructions: search first."}, u("q")]))
    C.append(("developer_last", [SYS, u("q"), a("a", reasoning="r"), {"role": "developer", "content": "now do X"}]))
    C.append(("developer_dropped_before_last_user", [SYS, {"role": "developer", "content": "old dev"},
                                                     u("q1"), a("a1", reasoning="r1"), u("q2")]))
    C.append(("developer_tools_rf", [{"role": "developer", "content": "dev with tools", "tools": [SEARCH],
                                      "response_format": {"type": "json_object"}}, u("x")]))
    C.append(("latest_reminder", [SYS, u("q"), {"role": "latest_reminder", "content": "Today is 2026-07-31."}]))
    C.append(("latest_reminder_mid", [SYS, {"role": "latest_reminder", "content": "reminder"}, u("q"),
                                      a("a", reasoning="r"), u("q2")]))
    C.append(("latest_reminder_after_user", [SYS, u("q"), {"role": "latest_reminder", "content": "rem"},
                                             a("ans", reasoning="think")]))
    C.append(("task_title", [SYS, u("Write a title", task="title")]))
    C.append(("task_query_then_answer", [SYS, u("find", task="query"), a("q text"), u("next")]))
    C.append(("task_action", [SYS, u("act", task="action")]))
    C.append(("user_after_user", [SYS, u("part 1"), u("part 2")]))
    C.append(("user_wo_eos_key", [SYS, u("x", mask=1)]))
    C.append(("assistant_then_assistant", [SYS, u("q"), a("a1", reasoning="r1"), a("a2", reasoning="r2")]))
    C.append(("long_reasoning_kept_with_tools_flag", [dict(SYS, tools=[WEATHER]), u("q1"), a("a1", reasoning="r1"),
                                                      u("q2"), a("a2", reasoning="r2"), u("q3")]))
    C.append(("tool_call_no_id", [dict(SYS, tools=[WEATHER]), u("go"),
                                  a("", tool_calls=[{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"X\"}"}}]),
                                  {"role": "tool", "content": "r"}]))
    C.append(("escapes_everywhere", [{"role": "system", "content": "Line\nTab\t\"q\" \\ </tool_result>"},
                                     u("<tool_result>fake</tool_result>\n\n"), a("ok\r\n", reasoning="\n")]))
    C.append(("trailing_system", [u("q"), a("x", reasoning="r"), {"role": "system", "content": "late system"}]))
    C.append(("system_then_assistant", [SYS, a("prefilled", reasoning="pre")]))
    C.append(("user_image_blocks", [SYS, u([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}},
                                            {"type": "text", "text": "what is it?"}])]))
    # ---- added: longer / combined conversations (ids prefixed "x_")
    C.append(("x_trip_long_tools", [
        dict(SYS, tools=[BOOKING, WEATHER, SEARCH]),
        u("来週、東京から パリ へ 2 人で行きたい。天気も見て。"),
        a("", reasoning="Need weather for both cities and a flight search.", tool_calls=[
            tc("c_3", "get_weather", {"city": "Paris", "days": 5}),
            tc("c_1", "get_weather", {"city": "東京", "days": 5}),
            tc("c_2", "search", {"query": "HND→CDG 直行便", "top_k": 3})]),
        tool("c_2", "JL045 10:25, AF275 22:55"), tool("c_3", "Paris: 12°C, rain"), tool("c_1", "東京: 18℃ 晴れ"),
        a("パリは雨、東京は晴れです。便は JL045 か AF275。", reasoning="Summarise three results."),
        u("JL045 で予約して。私は 34 歳、妻は年齢非公開。ビジネスで。"),
        a("", reasoning="Book with nullable age.", tool_calls=[
            tc("b_9", "book_trip", {"travellers": [{"name": "山田 太郎", "age": 34, "class": "business"},
                                                   {"name": "山田 花子", "age": None, "class": "business"}],
                                    "route": {"from": "HND", "to": "CDG", "via": None},
                                    "dates": ["2026-08-03"], "flex_days": 0, "notes": None})]),
        tool("b_9", '{"pnr": "X7Q2ZP", "status": "confirmed"}'),
        a("予約しました（PNR X7Q2ZP）。", reasoning="Confirmed."),
        u("ありがとう！🙏")]))
    C.append(("x_four_results_shuffled", [
        dict(SYS, tools=[TRANSLATE]),
        u("Translate 'good morning' into ja, ko, ar and hi."),
        a("I'll run four translations.", reasoning="four parallel calls", tool_calls=[
            tc("t-a", "translate", {"text": "good morning", "target": "ja", "formality": "formal"}),
            tc("t-b", "translate", {"text": "good morning", "target": "ko", "formality": None}),
            tc("t-c", "translate", {"text": "good morning", "target": "ar"}),
            tc("t-d", "translate", {"text": "good morning", "target": "hi", "glossary": [["good", "शुभ"], ["morning", "प्रभात"]]})]),
        tool("t-d", "सुप्रभात"), tool("t-b", "좋은 아침"), tool("t-a", "おはようございます"), tool("t-c", "صباح الخير")]))
    C.append(("x_results_then_more_calls", [
        dict(SYS, tools=[SEARCH, CALC]),
        u("Search the population of 上海 and 北京 then add them."),
        a("", reasoning="search both", tool_calls=[tc("s2", "search", {"query": "北京 人口"}),
                                                   tc("s1", "search", {"query": "上海 人口"})]),
        tool("s1", "24,870,895"), tool("s2", "21,893,095"),
        a("", reasoning="now add", tool_calls=[tc("m1", "calc", {"expr": "24870895 + 21893095"})]),
        tool("m1", "46763990"),
        a("合計は 46,763,990 人です。", reasoning="done")]))
    C.append(("x_reasoning_across_turns_no_tools", [
        SYS, u("Is 91 prime?"), a("No, 91 = 7 × 13.", reasoning="91/7 = 13."),
        u("Is 97 prime?"), a("Yes.", reasoning="Check 2,3,5,7: none divide 97."),
        u("What about 1 001?"), a("No: 7 × 11 × 13.", reasoning="1001 = 7·143 = 7·11·13."),
        u("Sum of those three factors?")]))
    C.append(("x_dev_sys_reminder_all", [
        {"role": "system", "content": "You are Kōan, a terse assistant. 回答は簡潔に。"},
        {"role": "developer", "content": "Always cite sources as [n].", "tools": [SEARCH]},
        u("Who wrote 『源氏物語』?"),
        {"role": "latest_reminder", "content": "Current date: 2026-07-31 (金). Locale: ja-JP."},
        a("紫式部 [1].", reasoning="Known fact."),
        {"role": "developer", "content": "From now on answer in English."},
        u("And when?"),
        {"role": "latest_reminder", "content": "Current date: 2026-07-31. Locale: en-US."}]))
    C.append(("x_system_dev_reminder_rf", [
        {"role": "system", "content": "JSON only.", "response_format": {"type": "json_schema", "json_schema": {
            "name": "city_facts", "strict": True, "schema": {"type": "object", "properties": {
                "city": {"type": "string", "description": "都市名"},
                "population": {"type": ["integer", "null"]},
                "landmarks": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "kind": {"type": "string", "enum": ["temple", "tower", "park"]}},
                    "required": ["name", "kind"], "additionalProperties": False}}},
                "required": ["city", "landmarks"], "additionalProperties": False}}}},
        {"role": "developer", "content": "Prefer official names."},
        {"role": "latest_reminder", "content": "Be accurate."},
        u("京都について")]))
    C.append(("x_rf_json_schema_multiturn", [
        dict(SYS, response_format={"type": "json_schema", "json_schema": {"name": "sentiment", "schema": {
            "type": "object", "properties": {"label": {"type": "string", "enum": ["pos", "neg", "neu"]},
                                             "score": {"type": "number", "minimum": 0, "maximum": 1}},
            "required": ["label"]}}}),
        u("I love this 😍"), a('{"label": "pos", "score": 0.97}', reasoning="emoji is positive"),
        u("最悪だった…"), a('{"label": "neg", "score": 0.91}', reasoning="最悪 = worst"),
        u("It is what it is.")]))
    C.append(("x_cjk_emoji_mix", [
        {"role": "system", "content": "你是一个乐于助人的助手。🤖"},
        u("请用三种语言说“谢谢”：中文、日本語、한국어。还有 emoji 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 1️⃣ ✍🏽"),
        a("谢谢 / ありがとう / 감사합니다 🙏", reasoning="简单的翻译任务。\n注意：全角标点，。！？"),
        u("ＡＢＣ１２３　全角スペース　と　半角 ｶﾀｶﾅ、𠮷野家、𩸽"),
        a("", reasoning="空回答")]))
    C.append(("x_empty_contents", [
        {"role": "system", "content": ""}, u(""), a("", reasoning=""), u(""),
        a("", reasoning="", tool_calls=None), u(" ")]))
    C.append(("x_empty_tool_result", [
        dict(SYS, tools=[NOPARAMS, WEATHER]), u("time and weather?"),
        a("", tool_calls=[tc("e2", "get_weather", {"city": ""}), tc("e1", "now", {})]),
        tool("e1", ""), tool("e2", "{}"), u("")]))
    C.append(("x_tools_in_developer_and_system", [
        dict(SYS, tools=[WEATHER]),
        {"role": "developer", "content": "Use translate for non-English output.", "tools": [TRANSLATE]},
        u("Weather in Seoul, answer in Korean."),
        a("", reasoning="weather first", tool_calls=[tc("w", "get_weather", {"city": "Seoul"})]),
        tool("w", "Seoul: 25C, humid"),
        a("", reasoning="then translate", tool_calls=[tc("tr", "translate", {"text": "Seoul: 25C, humid", "target": "ko"})]),
        tool("tr", "서울: 25도, 습함"),
        a("서울은 25도이고 습합니다.", reasoning="final")]))
    C.append(("x_effort_sweep_simple", [SYS, u("Prove that √2 is irrational.")]))
    C.append(("x_effort_sweep_tools", [dict(SYS, tools=[BOOKING]), u("Book 1 adult HND→SFO on 2026-09-01, economy."),
                                       a("", reasoning="straightforward", tool_calls=[
                                           tc("bk", "book_trip", {"travellers": [{"name": "A. Lee", "class": "economy"}],
                                                                  "route": {"from": "HND", "to": "SFO"},
                                                                  "dates": ["2026-09-01"]})]),
                                       tool("bk", "ok")]))
    C.append(("x_effort_sweep_multiturn", [SYS, u("Pick a number 1–10."), a("7", reasoning="random-ish"),
                                           u("Why 7?"), {"role": "latest_reminder", "content": "Answer in one line."}]))
    C.append(("x_task_with_tools_and_reasoning", [
        dict(SYS, tools=[SEARCH]), u("find recent papers on MoE", task="query"), a("mixture of experts 2026"),
        u("now summarise"), a("", reasoning="search", tool_calls=[tc("q1", "search", {"query": "MoE 2026 survey"})]),
        tool("q1", "3 results"), a("Three surveys found.", reasoning="summarised")]))
    C.append(("x_arabic_hindi_rtl", [
        {"role": "system", "content": "أنت مساعد مفيد."},
        u("ما هي عاصمة الهند؟ और हिंदी में भी बताइए। Việt Nam: thủ đô là gì?"),
        a("نيودلهي — नई दिल्ली. Thủ đô Việt Nam là Hà Nội.", reasoning="क्रमशः उत्तर"),
        u("Спасибо! \u200f\u200e\u202e mixed bidi marks \u202c")]))
    C.append(("x_reminder_between_tool_rounds", [
        dict(SYS, tools=[WEATHER]), u("weather in Oslo"),
        a("", reasoning="call", tool_calls=[tc("o1", "get_weather", {"city": "Oslo"})]),
        tool("o1", "Oslo: −3°C ❄"),
        {"role": "latest_reminder", "content": "Use Celsius and Fahrenheit."},
        a("−3 °C (27 °F) in Oslo.", reasoning="convert"), u("and Bergen?"),
        {"role": "latest_reminder", "content": "Use Celsius and Fahrenheit."}]))
    return C


# Option sets (thinking, drop_thinking, effort-by-revision). Effort None means "not given".
EFFORT_SWEEP = ("x_effort_sweep_simple", "x_effort_sweep_tools", "x_effort_sweep_multiturn", "x_trip_long_tools",
                "x_dev_sys_reminder_all")


def option_sets(rev, idx, cid=None):
    if cid in EFFORT_SWEEP:  # thinking mode with every effort level the revision accepts, kept and dropped
        efforts = (None, "high", "max") if rev == "preview" else (None, "low", "high", "max")
        return ([(True, True, e) for e in efforts] + [(True, False, e) for e in efforts]
                + [(False, True, None), (False, True, "max")])
    base = [(True, True, None), (False, True, None)]
    extra = []
    if idx % 3 == 0:
        extra.append((True, False, None))
    if rev == "preview":
        if idx % 2 == 0:
            extra.append((True, True, "max"))
        if idx % 5 == 0:
            extra.append((True, True, "high"))
    else:
        if idx % 2 == 0:
            extra.append((True, True, "high"))
        if idx % 2 == 1:
            extra.append((True, True, "max"))
        if idx % 5 == 0:
            extra.append((True, True, "low"))
    return base + extra


# ---------------------------------------------------------------- completions for parsing
def completions():
    E = "<｜end▁of▁sentence｜>"
    D = "｜DSML｜"

    def block(*invokes):
        return "\n\n<" + D + "tool_calls>\n" + "\n".join(invokes) + "\n</" + D + "tool_calls>"

    def inv(name, *params):
        return "<" + D + "invoke name=\"" + name + "\">\n" + "\n".join(params) + "\n</" + D + "invoke>"

    def par(k, v, s):
        return "<" + D + "parameter name=\"" + k + "\" string=\"" + s + "\">" + v + "</" + D + "parameter>"

    T = []
    T.append(("think_plain", True, "Let me think.</think>The answer is 4." + E))
    T.append(("think_empty_reasoning", True, "</think>Direct." + E))
    T.append(("think_empty_all", True, "</think>" + E))
    T.append(("chat_plain", False, "Hello there!" + E))
    T.append(("chat_empty", False, E))
    T.append(("think_unicode", True, "考える…🤔\n\nyes</think>日本語の答え — 👩‍👩‍👧" + E))
    T.append(("think_tool", True, "I should call the tool.</think>" + block(
        inv("get_weather", par("city", "Tokyo", "true"), par("days", "3", "false"))) + E))
    T.append(("think_content_tool", True, "r</think>Checking." + block(inv("get_weather", par("city", "Rome", "true"))) + E))
    T.append(("chat_tool", False, block(inv("get_weather", par("city", "Paris", "true"))) + E))
    T.append(("parallel_tools", True, "two</think>" + block(
        inv("get_weather", par("city", "Tokyo", "true")), inv("get_weather", par("city", "Osaka", "true"))) + E))
    T.append(("typed_args", True, "typed</think>" + block(
        inv("calc", par("expr", "1+2 < 4 && \"q\"", "true"), par("vars", "{\"x\": 1, \"y\": [1.5, null, true]}", "false"),
            par("list", "[1, 2]", "false")),
        inv("search", par("query", "", "true"), par("top_k", "3", "false"), par("score", "0.1", "false"),
            par("safe", "false", "false"), par("nothing", "null", "false")),
        inv("calc", par("expr", "true", "true"))) + E))
    T.append(("multiline_string_arg", False, block(inv("calc", par("expr", "line1\nline2\n\n<b>x</b>", "true"))) + E))
    T.append(("no_params", True, "t</think>" + block(inv("now")) + E))
    T.append(("unicode_args", False, block(inv("search", par("query", "東京 天気 ☀", "true"), par("top_k", "10", "false"))) + E))
    T.append(("reasoning_with_newlines", True, "\n\nstep 1\n\nstep 2\n</think>\n\nFinal\n" + E))
    T.append(("content_with_lt", False, "a < b and c > d, <html>" + E))
    T.append(("content_ends_newlines", True, "r</think>para\n\n" + E))
    return T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preview", default="/tmp/vllm/x0.20.0/vllm/tokenizers/deepseek_v4_encoding.py")
    ap.add_argument("--r0731", default="/tmp/vllm/x0.33.0/vllm/tokenizers/deepseek_v4_encoding.py")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "chat"))
    args = ap.parse_args()
    encs = {"preview": load(args.preview, "enc_preview"), "r0731": load(args.r0731, "enc_0731")}
    recs = []
    n_render = {"preview": 0, "r0731": 0}
    skipped = []
    for rev, enc in encs.items():
        for idx, (cid, msgs) in enumerate(conversations()):
            for thinking, drop, effort in option_sets(rev, idx, cid):
                try:
                    rendered = enc.encode_messages(json.loads(json.dumps(msgs)), "thinking" if thinking else "chat",
                                                   drop_thinking=drop, reasoning_effort=effort)
                except Exception as e:  # e.g. list content in the April file
                    skipped.append(f"{rev}/{cid}: {type(e).__name__}")
                    continue
                recs.append({"kind": "render", "id": cid, "revision": rev, "messages": msgs,
                             "thinking": thinking, "drop_thinking": drop, "reasoning_effort": effort,
                             # vLLM >= 0.2x adds: a trailing system message (or one followed by an
                             # assistant) opens an assistant turn. The April file does not.
                             "vllm_additions": rev == "r0731",
                             "rendered": rendered})
                n_render[rev] += 1
    parser = encs["preview"]  # only the preview file carries parse_message_from_completion_text
    n_parse = 0
    for cid, thinking, text in completions():
        parsed = parser.parse_message_from_completion_text(text, "thinking" if thinking else "chat")
        recs.append({"kind": "parse", "id": cid, "thinking": thinking, "text": text,
                     "parsed": {"content": parsed["content"], "reasoning": parsed["reasoning"],
                                "tool_calls": [{"name": t["function"]["name"], "arguments": t["function"]["arguments"]}
                                               for t in parsed["tool_calls"]]}})
        n_parse += 1
    # Every assistant turn of the conversations, as the model would have written it (rendered by
    # the encoder after a one-line user turn), parsed back by the official parser.
    for cid, msgs in conversations():
        for k, m in enumerate(msgs):
            if m.get("role") != "assistant":
                continue
            for thinking in (True, False):
                head = "<｜begin▁of▁sentence｜><｜User｜>x<｜Assistant｜>" + ("<think>" if thinking else "</think>")
                try:
                    full = parser.encode_messages([{"role": "user", "content": "x"}, json.loads(json.dumps(m))],
                                                  "thinking" if thinking else "chat", drop_thinking=False)
                    assert full.startswith(head)
                    text = full[len(head):]
                    parsed = parser.parse_message_from_completion_text(text, "thinking" if thinking else "chat")
                except Exception as e:
                    skipped.append(f"parse/{cid}#{k}: {type(e).__name__}")
                    continue
                recs.append({"kind": "parse", "id": f"{cid}#{k}", "thinking": thinking, "text": text,
                             "parsed": {"content": parsed["content"], "reasoning": parsed["reasoning"],
                                        "tool_calls": [{"name": t["function"]["name"],
                                                        "arguments": t["function"]["arguments"]}
                                                       for t in parsed["tool_calls"]]}})
                n_parse += 1
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "goldens.jsonl.gz")
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for r in recs:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    for rev, pth in (("preview", args.preview), ("r0731", args.r0731)):
        want = {"preview": PREVIEW_SHA256, "r0731": R0731_SHA256}[rev]
        if sha256(pth) != want:
            print(f"warning: {rev} encoder {pth} has sha256 {sha256(pth)}, expected {want}", file=sys.stderr)
    prov = {
        "generator": "scripts/chat/make_goldens.py",
        "conversations": len(conversations()),
        "render_records": n_render,
        "parse_records": n_parse,
        "encoders": {
            "preview": {"package": "vllm", "version": "0.20.0", "path": "vllm/tokenizers/deepseek_v4_encoding.py",
                        "sha256": sha256(args.preview),
                        "wheel": "vllm-0.20.0-cp38-abi3-manylinux_2_35_x86_64.whl",
                        "wheel_sha256": "24d28892e210200f6e1bd13f699c42a74cd2bb7364c11248e2348f677c7f6dfb",
                        "note": "April preview revision; reasoning_effort in {None, high, max}; has parse_message_from_completion_text"},
            "r0731": {"package": "vllm", "version": "0.33.0", "path": "vllm/tokenizers/deepseek_v4_encoding.py",
                      "sha256": sha256(args.r0731),
                      "wheel": "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl",
                      "wheel_sha256": "4b6bdec4ab269990bf70d45a3c1e94c3760a27064513760193b26d6f0da883aa",
                      "note": "0731 reasoning-effort table (low/high/max, default low); vLLM additions: image "
                              "placeholders, trailing system message opens generation; no parser"},
        },
        "skipped (the encoder raised)": sorted(set(skipped)),
        "python": sys.version.split()[0],
    }
    with open(os.path.join(args.out, "provenance.json"), "w") as f:
        json.dump(prov, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"render: {n_render}, parse: {n_parse}, bytes: {os.path.getsize(path)}")


if __name__ == "__main__":
    main()
