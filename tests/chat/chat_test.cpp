// src/chat against the official DeepSeek-V4 encoder.
// Oracle: tests/fixtures/chat/goldens.jsonl.gz, written by scripts/chat/make_goldens.py, which
// RUNS the official encoding_dsv4.py (vllm 0.20.0 = preview, 0.33.0 = 0731; provenance.json).
#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "dsv4/chat/chat.h"

namespace dsv4::chat {
namespace {

const std::string kGoldens = std::string(DSV4_FIXTURES_DIR) + "/chat/goldens.jsonl.gz";
const std::string E = "<｜end▁of▁sentence｜>";
const std::string D = "｜DSML｜";

std::vector<Json> load_goldens() {
  std::vector<Json> out;
  gzFile gz = gzopen(kGoldens.c_str(), "rb");
  if (gz == nullptr) return out;
  std::string data;
  char buf[65536];
  int n;
  while ((n = gzread(gz, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  gzclose(gz);
  size_t pos = 0;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    if (nl > pos) out.push_back(Json::parse(data.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return out;
}

const std::vector<Json>& goldens() {
  static const std::vector<Json> g = load_goldens();
  return g;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    int len = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
    if (len == 0 || i + static_cast<size_t>(len) > s.size()) return false;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0xC0) != 0x80) return false;
    if (b == 0xE0 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;
    if (b == 0xED && static_cast<unsigned char>(s[i + 1]) > 0x9F) return false;
    if (b == 0xF0 && static_cast<unsigned char>(s[i + 1]) < 0x90) return false;
    if (b == 0xF4 && static_cast<unsigned char>(s[i + 1]) > 0x8F) return false;
    i += static_cast<size_t>(len);
  }
  return true;
}

// Feeds `text` split at `cuts`; checks every emitted text chunk.
ParsedMessage stream(const std::string& text, const ParseOptions& o, const std::vector<size_t>& cuts) {
  StreamParser p(o);
  ParsedMessage m;
  size_t prev = 0;
  auto check = [&](const std::vector<Delta>& ds) {
    for (const auto& d : ds) {
      if (d.kind == Delta::Kind::tool_call) continue;
      EXPECT_FALSE(d.text.empty());
      EXPECT_TRUE(valid_utf8(d.text)) << "chunk not valid UTF-8 in: " << text;
      for (const char* mk : {"</think>", "<think>", "｜DSML｜tool_calls", "|DSML|tool_calls", "<｜end▁of▁sentence｜>"})
        EXPECT_EQ(d.text.find(mk), std::string::npos) << "marker " << mk << " leaked from: " << text;
    }
    apply_deltas(m, ds);
  };
  for (size_t c : cuts) {
    check(p.feed(std::string_view(text).substr(prev, c - prev)));
    prev = c;
  }
  check(p.feed(std::string_view(text).substr(prev)));
  check(p.finish());
  return m;
}

void expect_stream_equals_whole(const std::string& text, const ParseOptions& o, uint32_t seed) {
  const ParsedMessage whole = parse(text, o);
  std::vector<size_t> bytes;
  for (size_t i = 1; i < text.size(); ++i) bytes.push_back(i);
  EXPECT_EQ(stream(text, o, bytes), whole) << "byte-by-byte: " << text;
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<size_t> cuts;
    size_t pos = 0;
    while (true) {
      pos += 1 + rng() % 12;
      if (pos >= text.size()) break;
      cuts.push_back(pos);
    }
    EXPECT_EQ(stream(text, o, cuts), whole) << "random split " << trial << ": " << text;
  }
}

TEST(ChatRender, GoldensByteEqual) {
  const auto& g = goldens();
  ASSERT_FALSE(g.empty()) << "missing " << kGoldens;
  std::map<std::string, int> total, equal;
  for (const auto& r : g) {
    if (r["kind"] != "render") continue;
    RenderOptions o;
    const std::string rev = r["revision"].get<std::string>();
    o.revision = rev == "preview" ? Revision::preview : Revision::r0731;
    o.thinking = r["thinking"].get<bool>();
    o.drop_thinking = r["drop_thinking"].get<bool>();
    o.reasoning_effort = r["reasoning_effort"].is_null() ? "" : r["reasoning_effort"].get<std::string>();
    o.vllm_additions = r["vllm_additions"].get<bool>();
    auto got = render(r["messages"], o);
    ++total[rev];
    ASSERT_TRUE(got.is_ok()) << r["id"] << ": " << got.status().to_string();
    const std::string want = r["rendered"].get<std::string>();
    EXPECT_EQ(*got, want) << r["id"] << " (" << rev << ", thinking=" << o.thinking << ", drop=" << o.drop_thinking
                          << ", effort=" << o.reasoning_effort << ")";
    if (*got == want) ++equal[rev];
  }
  for (const auto& [rev, n] : total) std::printf("[chat] %s: %d/%d goldens byte-equal\n", rev.c_str(), equal[rev], n);
  EXPECT_GE(total["preview"], 60);
  EXPECT_GE(total["r0731"], 60);
}

TEST(ChatParse, GoldensEqualOfficialParser) {
  int n = 0;
  for (const auto& r : goldens()) {
    if (r["kind"] != "parse") continue;
    ++n;
    ParseOptions o;
    o.thinking = r["thinking"].get<bool>();
    const std::string text = r["text"].get<std::string>();
    const ParsedMessage m = parse(text, o);
    const Json& want = r["parsed"];
    EXPECT_EQ(m.content, want["content"].get<std::string>()) << r["id"];
    EXPECT_EQ(m.reasoning, want["reasoning"].get<std::string>()) << r["id"];
    ASSERT_EQ(m.tool_calls.size(), want["tool_calls"].size()) << r["id"];
    for (size_t i = 0; i < m.tool_calls.size(); ++i) {
      const auto& wt = want["tool_calls"][i];
      EXPECT_EQ(m.tool_calls[i].name, wt["name"].get<std::string>()) << r["id"];
      EXPECT_EQ(m.tool_calls[i].arguments_text, wt["arguments"].get<std::string>()) << r["id"];
      EXPECT_EQ(m.tool_calls[i].arguments, Json::parse(wt["arguments"].get<std::string>())) << r["id"];
    }
    expect_stream_equals_whole(text, o, static_cast<uint32_t>(n));
  }
  EXPECT_GE(n, 15);
}

ParsedMessage P(const std::string& text, bool thinking = true, Json tools = nullptr) {
  ParseOptions o;
  o.thinking = thinking;
  o.tools = std::move(tools);
  expect_stream_equals_whole(text, o, 7);
  return parse(text, o);
}

std::string block(const std::string& dsml, const std::string& params) {
  return "<" + dsml + "tool_calls>\n<" + dsml + "invoke name=\"f\">\n" + params + "\n</" + dsml + "invoke>\n</" + dsml +
         "tool_calls>";
}

TEST(ChatParse, ToolBlockBeforeThinkEnd) {
  auto m = P("I will call it.\n\n" + block(D, "<" + D + "parameter name=\"x\" string=\"false\">1</" + D + "parameter>") + E);
  EXPECT_EQ(m.reasoning, "I will call it.");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].arguments, Json::parse(R"({"x": 1})"));
  // a </think> after the block is dropped
  auto m2 = P("r" + block(D, "") + "</think>after" + E);
  EXPECT_EQ(m2.reasoning, "r");
  EXPECT_EQ(m2.content, "after");
  EXPECT_EQ(m2.tool_calls.size(), 1u);
}

TEST(ChatParse, MissingThinkEnd) {
  auto m = P("still thinking about it");
  EXPECT_EQ(m.reasoning, "still thinking about it");
  EXPECT_EQ(m.content, "");
  auto m2 = P("thinking" + E + "garbage after eos");
  EXPECT_EQ(m2.reasoning, "thinking");
  EXPECT_EQ(m2.content, "");
}

TEST(ChatParse, AsciiDsml) {
  auto m = P("r</think>ok\n\n" + block("|DSML|", "<|DSML|parameter name=\"city\" string=\"true\">Tokyo</|DSML|parameter>") + E);
  EXPECT_EQ(m.content, "ok");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "f");
  EXPECT_EQ(m.tool_calls[0].arguments, Json::parse(R"({"city": "Tokyo"})"));
  EXPECT_EQ(m.tool_calls[0].arguments_text, R"({"city": "Tokyo"})");
}

TEST(ChatParse, RepeatedThinkEnd) {
  auto m = P("a</think></think>b</think>c" + E);
  EXPECT_EQ(m.reasoning, "a");
  EXPECT_EQ(m.content, "bc");
  auto m2 = P("<think>a</think>b" + E);
  EXPECT_EQ(m2.reasoning, "a");
  EXPECT_EQ(m2.content, "b");
}

TEST(ChatParse, ArgumentsTypedBySchema) {
  Json tools = Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{"type":"object",
    "properties":{"s":{"type":"string"},"n":{"type":"integer"},"o":{"type":"object"},"b":{"type":"boolean"}}}}}])");
  auto p = [&](const std::string& k, const std::string& v, const std::string& str) {
    return "<" + D + "parameter name=\"" + k + "\" string=\"" + str + "\">" + v + "</" + D + "parameter>";
  };
  auto m = P("</think>" + block(D, p("s", "123", "false") + "\n" + p("n", "42", "false") + "\n" + p("o", "{\"a\": [1]}", "false") +
                                       "\n" + p("b", "true", "true") + "\n" + p("bad", "{not json", "false")) + E,
             true, tools);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  const Json& a = m.tool_calls[0].arguments;
  EXPECT_EQ(a["s"], "123");  // schema says string
  EXPECT_EQ(a["n"], 42);
  EXPECT_EQ(a["o"], Json::parse(R"({"a": [1]})"));
  EXPECT_EQ(a["b"], "true");  // string="true" stays a string
  EXPECT_EQ(a["bad"], "{not json");
}

TEST(ChatParse, UnterminatedAndPartial) {
  // truncated in the middle of an invoke: the complete one is kept, the partial one dropped
  auto m = P("r</think>\n\n<" + D + "tool_calls>\n<" + D + "invoke name=\"a\">\n</" + D + "invoke>\n<" + D +
             "invoke name=\"b\">\n<" + D + "parameter name=\"x\" string=\"true\">hal");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "a");
  EXPECT_EQ(m.tool_calls[0].arguments_text, "{}");
  // a lone '<' or partial marker at the end is text, flushed at the end
  auto m2 = P("x</think>2 <", true);
  EXPECT_EQ(m2.content, "2 <");
  auto m3 = P("a </thin", true);
  EXPECT_EQ(m3.reasoning, "a </thin");
  auto m4 = P("</think>end\n\n<｜DSML｜tool", true);
  EXPECT_EQ(m4.content, "end\n\n<｜DSML｜tool");
}

TEST(ChatParse, HoldsBackPartialMarkers) {
  ParseOptions o;
  o.thinking = false;
  StreamParser p(o);
  ParsedMessage m;
  apply_deltas(m, p.feed("Hello <"));
  EXPECT_EQ(m.content, "Hello ");
  apply_deltas(m, p.feed("｜end▁of▁sen"));
  EXPECT_EQ(m.content, "Hello ");
  apply_deltas(m, p.feed("tence｜>more"));
  EXPECT_EQ(m.content, "Hello ");
  EXPECT_TRUE(p.done());
  apply_deltas(m, p.finish());
  EXPECT_EQ(m.content, "Hello ");
  // split UTF-8 is held until complete
  StreamParser q(o);
  ParsedMessage m2;
  apply_deltas(m2, q.feed("\xE6\x97"));
  EXPECT_EQ(m2.content, "");
  apply_deltas(m2, q.feed("\xA5!"));
  EXPECT_EQ(m2.content, "日!");
}

TEST(ChatParse, InvalidUtf8NeverThrowsAndStaysValid) {
  ParseOptions o;
  std::mt19937 rng(123);
  const std::vector<std::string> pieces = {"</think>", "<think>", "\n\n", "<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>",
                                           "<｜DSML｜invoke name=\"f\">", "</｜DSML｜invoke>", "<｜DSML｜parameter name=\"k\" string=\"false\">",
                                           "</｜DSML｜parameter>", "<", "｜", "\xE6", "\x97\xA5", "\xFF", "a", "日本", E};
  for (int t = 0; t < 200; ++t) {
    std::string s;
    int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    o.thinking = (t % 2) == 0;
    expect_stream_equals_whole(s, o, static_cast<uint32_t>(t));
  }
}

TEST(ChatJson, PythonJsonDumps) {
  EXPECT_EQ(py_json_dumps(Json::parse(R"({"b": 1, "a": [1.0, 1e-7, 1e16, 1e15, 0.1, -0.0, 3e21, true, null, "x\u0001/é\"\\"]})")),
            R"({"b": 1, "a": [1.0, 1e-07, 1e+16, 1000000000000000.0, 0.1, -0.0, 3e+21, true, null, "x\u0001/é\"\\"]})");
  EXPECT_EQ(py_json_dumps(Json::object()), "{}");
  EXPECT_EQ(py_json_dumps(Json::array()), "[]");
  EXPECT_EQ(py_json_dumps(Json::parse("0.0001")), "0.0001");
  EXPECT_EQ(py_json_dumps(Json::parse("0.00001")), "1e-05");
  EXPECT_EQ(py_json_dumps(Json::parse("123456789012345678")), "123456789012345678");
}

TEST(ChatRender, EffortDecisions) {
  auto pv = resolve_effort(Revision::preview, "medium");
  ASSERT_TRUE(pv.is_ok());
  EXPECT_EQ(pv->encoder_effort, "high");
  EXPECT_EQ(resolve_effort(Revision::preview, "xhigh")->encoder_effort, "max");
  EXPECT_EQ(resolve_effort(Revision::r0731, "minimal")->encoder_effort, "low");
  EXPECT_EQ(resolve_effort(Revision::r0731, "")->encoder_effort, "high");
  EXPECT_FALSE(resolve_effort(Revision::r0731, "none")->thinking);
  EXPECT_FALSE(resolve_effort(Revision::r0731, "ultra").is_ok());
}

TEST(ChatRender, RandomMessagesNeverThrow) {
  std::mt19937 rng(99);
  const std::vector<Json> values = {nullptr, true, 0, 1.5, "", "x", "user", "assistant", "tool", "system",
                                    "developer", "latest_reminder", "title", "action", Json::array(),
                                    Json::object(), Json::parse(R"([{"type":"text","text":"t"},{"type":"image"}])"),
                                    Json::parse(R"([{"id":"a","function":{"name":"f","arguments":"{\"k\": [1]}"}}])"),
                                    Json::parse(R"([{"function":{"name":"f","parameters":{}}}])"),
                                    Json::parse(R"([{"function":{"arguments":7}}])")};
  const std::vector<std::string> keys = {"role", "content", "reasoning", "tool_calls", "tool_call_id", "tools",
                                         "response_format", "task", "wo_eos", "mask"};
  for (int t = 0; t < 3000; ++t) {
    Json msgs = Json::array();
    const int n = static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      Json m = Json::object();
      for (const auto& k : keys)
        if (rng() % 2) m[k] = values[rng() % values.size()];
      msgs.push_back(m);
    }
    RenderOptions o;
    o.revision = (t % 2) ? Revision::preview : Revision::r0731;
    o.thinking = (t % 3) != 0;
    o.drop_thinking = (t % 5) != 0;
    o.vllm_additions = (t % 7) == 0;
    EXPECT_NO_THROW((void)render(msgs, o)) << msgs.dump();
  }
}

TEST(ChatRender, DetectRevision) {
  EXPECT_EQ(detect_revision("DeepSeek-V4-Flash-0731-Q4_K_M.gguf"), Revision::r0731);
  EXPECT_EQ(detect_revision("DeepSeek-V4-Flash-Q4_K_M.gguf"), Revision::preview);
}

TEST(ChatParse, ParamValueContainingCloseTagIsCut) {
  // The official parser rejects this (arg_types#2 in provenance.json's skipped list); we keep
  // the text up to the first close tag and never throw.
  auto m = P("</think>" + block(D, "<" + D + "parameter name=\"e\" string=\"true\">a </" + D + "parameter> b</" + D +
                                       "parameter>") + E);
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].arguments["e"], "a ");
}

TEST(ChatRender, BadInputIsAStatus) {
  RenderOptions o;
  EXPECT_FALSE(render(Json::parse(R"([{"role":"wizard","content":"x"}])"), o).is_ok());
  EXPECT_FALSE(render(Json::parse(R"([{"role":"developer","content":""}])"), o).is_ok());
  EXPECT_FALSE(render(Json::parse(R"([{"role":"user","content":"x","task":"nope"}])"), o).is_ok());
  EXPECT_FALSE(render(Json::parse(R"({"role":"user"})"), o).is_ok());
  EXPECT_FALSE(render(Json::parse(
                          R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{bad"}}]}])"),
                      o)
                   .is_ok());
  o.reasoning_effort = "low";  // not accepted by the preview encoder
  EXPECT_FALSE(render(Json::parse(R"([{"role":"user","content":"x"}])"), o).is_ok());
}

}  // namespace
}  // namespace dsv4::chat
