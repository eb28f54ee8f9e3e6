// dsv4-server-scripted — TEST BACKEND, NOT A MODEL. The real dsv4-server program (server_main,
// same flags, same HTTP layer) over dsv4::testing::ScriptedEngine, for tests/python/server.
//
//   dsv4-server-scripted --tokenizer third_party/tokenizer/deepseek-v4/tokenizer.json --port 0 ...
//
// Test-only additions (present only in this binary):
// - request header `X-Dsv4-Script: {"segments": [...], "eos": true}` scripts the generation of
//   that request. Each segment is a string (tokenized as model output: added tokens such as
//   </think> or ｜DSML｜ become their ids), an integer token id, or {"bytes": "e4b8"} (one
//   single-byte token per hex byte, to split a UTF-8 character across tokens). After the script
//   the engine emits EOS when "eos" is true (default), else its deterministic default tokens.
//   Without the header a request gets the default tokens (a hash of the last token).
// - POST /test/config {"decode_delay_ms", "prefill_token_delay_ms", "fail_next_calls",
//   "poison_token"} sets the engine's timing and fault injection (all optional).
// Without --alias/--model the served model is called "dsv4".
#include <fmt/core.h>
#include <httplib.h>

#include <chrono>
#include <list>
#include <mutex>

#include "dsv4/server/server.h"
#include "scripted_engine.h"

namespace {

using dsv4::server::Json;

struct Entry {
  std::vector<int32_t> prompt;
  std::vector<int32_t> script;
  bool eos = true;
};

struct Scripts {
  std::mutex mu;
  std::list<Entry> entries;
  int32_t eos_id = 1;
  std::vector<int32_t> byte_token;  // byte value → single-byte token id (-1 if none)
  dsv4::testing::ScriptedEngine* engine = nullptr;
};
Scripts g;

int32_t next_for(std::span<const int32_t> hist) {
  std::lock_guard lk(g.mu);
  const Entry* best = nullptr;
  for (const auto& e : g.entries) {
    if (e.prompt.size() > hist.size()) continue;
    if (!std::equal(e.prompt.begin(), e.prompt.end(), hist.begin())) continue;
    if (!best || e.prompt.size() > best->prompt.size()) best = &e;
  }
  if (!best) return -1;
  const size_t k = hist.size() - best->prompt.size();
  if (k < best->script.size()) return best->script[k];
  return best->eos ? g.eos_id : -1;
}

dsv4::Result<std::vector<int32_t>> parse_script(const Json& j, const dsv4::Tokenizer& tok) {
  auto bad = [](std::string m) { return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "X-Dsv4-Script: " + m); };
  std::vector<int32_t> ids;
  if (!j.is_array()) return bad("segments must be an array");
  for (const auto& s : j) {
    if (s.is_string()) {
      auto r = tok.encode_rendered(s.get<std::string>());
      if (!r) return r.status();
      ids.insert(ids.end(), r->begin(), r->end());
    } else if (s.is_number_integer()) {
      const int64_t id = s.get<int64_t>();
      if (!tok.is_valid_id(static_cast<int32_t>(id)) || id < 0 || id > INT32_MAX) return bad("bad token id");
      ids.push_back(static_cast<int32_t>(id));
    } else if (s.is_object() && s.contains("bytes") && s["bytes"].is_string()) {
      const std::string hex = s["bytes"].get<std::string>();
      if (hex.size() % 2) return bad("odd hex length");
      for (size_t i = 0; i < hex.size(); i += 2) {
        const int b = std::stoi(hex.substr(i, 2), nullptr, 16);
        if (g.byte_token[static_cast<size_t>(b)] < 0) return bad("no single-byte token");
        ids.push_back(g.byte_token[static_cast<size_t>(b)]);
      }
    } else {
      return bad("a segment must be a string, a token id or {\"bytes\": hex}");
    }
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  dsv4::server::ServerHooks hooks;
  hooks.program = "dsv4-server-scripted";
  hooks.description =
      "dsv4-server-scripted: TEST BACKEND (ScriptedEngine, no model) behind the real dsv4-server HTTP layer";
  const dsv4::Tokenizer* tokp = nullptr;
  hooks.load_tokenizer = [](const dsv4::server::ServerOptions&) -> dsv4::Result<dsv4::Tokenizer> {
    return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "dsv4-server-scripted needs --tokenizer tokenizer.json");
  };
  hooks.make_engine = [&tokp](const dsv4::server::ServerOptions& o, const dsv4::Tokenizer& tok)
      -> dsv4::Result<std::unique_ptr<dsv4::runtime::Engine>> {
    tokp = &tok;
    dsv4::testing::ScriptedEngineOptions so;
    so.n_slots = o.n_parallel;
    so.n_vocab = tok.vocab_size();
    so.n_ctx = o.n_ctx;
    auto eng = std::make_unique<dsv4::testing::ScriptedEngine>(so);
    g.engine = eng.get();
    if (auto e = tok.find_token("<｜end▁of▁sentence｜>")) g.eos_id = *e;
    g.byte_token.assign(256, -1);
    for (int32_t id = 0; id < tok.vocab_size(); ++id)
      if (tok.is_valid_id(id) && !tok.is_added(id) && tok.token_bytes(id).size() == 1)
        g.byte_token[static_cast<unsigned char>(tok.token_bytes(id)[0])] = id;
    eng->set_script_fn([](std::span<const int32_t> hist) { return next_for(hist); });
    fmt::print(stderr, "dsv4-server-scripted: TEST BACKEND — scripted engine, no model weights\n");
    return std::unique_ptr<dsv4::runtime::Engine>(std::move(eng));
  };
  hooks.before_submit = [&tokp](const httplib::Request& req, const dsv4::server::PreparedRequest& p)
      -> dsv4::Result<std::function<void()>> {
    if (!req.has_header("X-Dsv4-Script")) return std::function<void()>();
    Json j = Json::parse(req.get_header_value("X-Dsv4-Script"), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("segments"))
      return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "X-Dsv4-Script: not {\"segments\": [...]}");
    auto ids = parse_script(j["segments"], *tokp);
    if (!ids) return ids.status();
    std::lock_guard lk(g.mu);
    g.entries.push_front(Entry{p.gen.prompt, std::move(*ids), !j.contains("eos") || j["eos"] != false});
    auto it = g.entries.begin();
    return std::function<void()>([it] {
      std::lock_guard lk2(g.mu);
      g.entries.erase(it);
    });
  };
  hooks.add_routes = [](httplib::Server& svr) {
    svr.Post("/test/config", [](const httplib::Request& req, httplib::Response& res) {
      Json j = Json::parse(req.body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        res.status = 400;
        return;
      }
      using std::chrono::microseconds;
      if (j.contains("decode_delay_ms"))
        g.engine->set_decode_delay(microseconds(static_cast<int64_t>(j["decode_delay_ms"].get<double>() * 1000)));
      if (j.contains("prefill_token_delay_ms"))
        g.engine->set_prefill_token_delay(
            microseconds(static_cast<int64_t>(j["prefill_token_delay_ms"].get<double>() * 1000)));
      if (j.contains("fail_next_calls")) g.engine->fail_next_calls(j["fail_next_calls"].get<int>());
      if (j.contains("poison_token")) {
        if (j["poison_token"].is_null()) g.engine->set_poison_token(std::nullopt);
        else g.engine->set_poison_token(j["poison_token"].get<int32_t>());
      }
      res.set_content("{}", "application/json");
    });
  };
  return dsv4::server::server_main(argc, argv, hooks);
}
