// Streaming output without sockets: stop strings split across tokens, CJK split across
// tokens, reasoning / tool-call deltas, stream == non-stream (dsv4/server/output.h).
#include <gtest/gtest.h>

#include <random>

#include "dsv4/core/utf8.h"
#include "dsv4/server/output.h"

using namespace dsv4;
using namespace dsv4::server;

namespace {

const Tokenizer& tok() {
  static Tokenizer t = [] {
    auto r = Tokenizer::from_file(DSV4_TOKENIZER_JSON);
    if (!r) std::abort();
    return std::move(*r);
  }();
  return t;
}

// Runs `ids` through an Output; returns the concatenated stream deltas and the whole response.
struct RunResult {
  std::string content, reasoning, text, args, finish;
  Json response;
  std::vector<Json> chunks;
};

RunResult run(PreparedRequest req, const std::vector<int32_t>& ids, runtime::FinishReason fr = runtime::FinishReason::kStop) {
  RunResult r;
  for (bool stream : {true, false}) {
    req.stream = stream;
    Output out(req, tok(), "id", 0);
    runtime::TokenEvent ev;
    std::vector<Json> chunks;
    bool stopped = false;
    for (int32_t id : ids) {
      runtime::Sampled s;
      s.id = id;
      ++ev.n_generated;
      auto c = out.on_token(s, ev);
      chunks.insert(chunks.end(), c.begin(), c.end());
      if (out.stop_hit()) {
        stopped = true;
        break;
      }
    }
    auto c = out.finish(stopped ? runtime::FinishReason::kStop : fr, ev);
    chunks.insert(chunks.end(), c.begin(), c.end());
    if (stream) {
      r.chunks = chunks;
      for (const auto& ch : chunks) {
        const std::string dumped = ch.dump();
        EXPECT_TRUE(dsv4::is_valid_utf8(dumped));
        if (ch["choices"].empty()) continue;
        const Json& c0 = ch["choices"][0];
        if (c0["finish_reason"].is_string()) r.finish = c0["finish_reason"];
        if (c0.contains("text")) r.text += c0["text"].get<std::string>();
        if (!c0.contains("delta")) continue;
        const Json& d = c0["delta"];
        if (d.contains("content")) r.content += d["content"].get<std::string>();
        if (d.contains("reasoning_content")) r.reasoning += d["reasoning_content"].get<std::string>();
        if (d.contains("tool_calls") && d["tool_calls"][0]["function"].contains("arguments"))
          r.args += d["tool_calls"][0]["function"]["arguments"].get<std::string>();
      }
    } else {
      r.response = out.response();
    }
  }
  return r;
}

std::vector<int32_t> ids_of(const std::string& s) { return *tok().encode_rendered(s); }

// One single-byte token per byte of `s`.
std::vector<int32_t> byte_ids(const std::string& s) {
  std::vector<int32_t> map(256, -1);
  for (int32_t id = 0; id < tok().vocab_size(); ++id)
    if (!tok().is_added(id) && tok().token_bytes(id).size() == 1) map[static_cast<unsigned char>(tok().token_bytes(id)[0])] = id;
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(map[c]);
  return out;
}

}  // namespace

TEST(StopMatcher, SplitAcrossPushes) {
  StopMatcher m({"STOP", "</end>"});
  std::string out;
  for (std::string piece : {"hello S", "T", "O", "x more </e", "nx> tail"}) out += m.push(piece);
  EXPECT_FALSE(m.hit());
  out += m.push("...ST");
  out += m.push("OP!");
  EXPECT_TRUE(m.hit());
  EXPECT_EQ(out, "hello STOx more </enx> tail...");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, HoldsPrefixUntilResolved) {
  StopMatcher m({"ab"});
  EXPECT_EQ(m.push("xa"), "x");
  EXPECT_EQ(m.finish(), "a");
  StopMatcher n({"世界"});
  EXPECT_EQ(n.push("你好世"), "你好");
  EXPECT_EQ(n.push("界"), "");
  EXPECT_TRUE(n.hit());
}

TEST(Output, ChatReasoningAndContent) {
  PreparedRequest req;
  req.thinking = true;
  req.gen.stop_tokens = {1};
  auto ids = ids_of("Let me think.</think>The answer is 4.");
  ids.push_back(1);
  RunResult r = run(req, ids);
  EXPECT_EQ(r.reasoning, "Let me think.");
  EXPECT_EQ(r.content, "The answer is 4.");
  const Json& msg = r.response["choices"][0]["message"];
  EXPECT_EQ(msg["content"], r.content);
  EXPECT_EQ(msg["reasoning_content"], r.reasoning);
  EXPECT_EQ(r.finish, "stop");
  EXPECT_EQ(r.response["choices"][0]["finish_reason"], "stop");
}

TEST(Output, StopStringAcrossTokens) {
  PreparedRequest req;
  req.thinking = false;
  req.stop = {"END"};
  req.gen.stop_tokens = {1};
  std::vector<int32_t> ids = ids_of("abc E");
  for (auto x : byte_ids("ND")) ids.push_back(x);
  for (auto x : ids_of(" never")) ids.push_back(x);
  RunResult r = run(req, ids);
  EXPECT_EQ(r.content, "abc ");
  EXPECT_EQ(r.response["choices"][0]["message"]["content"], "abc ");
  EXPECT_EQ(r.finish, "stop");
}

TEST(Output, CjkSplitAcrossTokens) {
  PreparedRequest req;
  req.endpoint = Endpoint::kCompletion;
  req.gen.stop_tokens = {1};
  RunResult r = run(req, byte_ids("你好，世界"), runtime::FinishReason::kLength);
  EXPECT_EQ(r.text, "你好，世界");
  EXPECT_EQ(r.response["choices"][0]["text"], "你好，世界");
  EXPECT_EQ(r.response["choices"][0]["finish_reason"], "length");
  for (const auto& c : r.chunks) {
    if (!c["choices"].empty() && c["choices"][0].contains("text")) {
      EXPECT_TRUE(dsv4::is_valid_utf8(c["choices"][0]["text"].get<std::string>()));
    }
  }
}

TEST(Output, ToolCall) {
  PreparedRequest req;
  req.thinking = true;
  req.gen.stop_tokens = {1};
  req.tools = Json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}])");
  auto ids = ids_of(
      "I should call.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
      "<｜DSML｜parameter name=\"city\" string=\"true\">Tokyo</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
  ids.push_back(1);
  RunResult r = run(req, ids);
  EXPECT_EQ(r.finish, "tool_calls");
  const Json& msg = r.response["choices"][0]["message"];
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Tokyo","days":3})"));
  EXPECT_EQ(r.args, msg["tool_calls"][0]["function"]["arguments"]);
  EXPECT_TRUE(msg["content"].is_null());
  EXPECT_EQ(r.response["choices"][0]["finish_reason"], "tool_calls");
}

TEST(Output, RandomSplitsStreamEqualsWhole) {
  PreparedRequest req;
  req.thinking = true;
  req.gen.stop_tokens = {1};
  req.stop = {"STOP"};
  const std::string text = "思考中…🙂</think>答案是：東京、大阪。🇯🇵 done ST no STOP after";
  RunResult r = run(req, byte_ids(text));
  EXPECT_EQ(r.reasoning, "思考中…🙂");
  EXPECT_EQ(r.content, "答案是：東京、大阪。🇯🇵 done ST no ");
  EXPECT_EQ(r.response["choices"][0]["message"]["content"], r.content);
}

TEST(Output, UsageAndTimings) {
  runtime::TokenEvent ev;
  ev.n_prompt = 10;
  ev.n_cached = 4;
  ev.n_generated = 5;
  ev.prompt_ms = 12;
  ev.gen_ms = 50;
  Json t = timings_json(ev);
  EXPECT_EQ(t["prompt_n"], 6);
  EXPECT_EQ(t["cache_n"], 4);
  EXPECT_EQ(t["predicted_n"], 5);
  EXPECT_DOUBLE_EQ(t["predicted_per_second"].get<double>(), 100.0);
  Json u = usage_json(ev);
  EXPECT_EQ(u["total_tokens"], 15);
}
