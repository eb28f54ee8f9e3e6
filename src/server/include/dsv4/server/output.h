// dsv4 server: generated tokens → OpenAI response JSON (non-streamed and SSE chunks).
//
// Pipeline per request (one Output object, one thread at a time; no shared state, S6):
//   token id → StreamDecoder (complete UTF-8 only) → StopMatcher (holds back any tail that may
//   begin a stop string) → chat::StreamParser (chat only: reasoning / content / DSML tool calls,
//   never a partial marker) → deltas → JSON.
// The concatenation of streamed deltas equals the non-streamed message for every split of the
// token sequence (tests/server/output_test.cpp checks it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/chat/chat.h"
#include "dsv4/runtime/scheduler.h"
#include "dsv4/server/api.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace dsv4::server {

// Streaming stop-string matcher. push() returns the text that can no longer be part of a stop
// string; once a stop string is complete, hit() is true and the text before it has been returned
// (the stop string itself and everything after it are dropped). finish() flushes the held tail.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(std::string_view text);
  std::string finish();
  bool hit() const { return hit_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool hit_ = false;
};

// Timings in llama-server's shape.
Json timings_json(const runtime::TokenEvent& ev);
Json usage_json(const runtime::TokenEvent& ev);

class Output {
 public:
  Output(const PreparedRequest& req, const Tokenizer& tok, std::string id, int64_t created);

  // Feeds one generated token. Returns SSE payloads (JSON objects) ready to send when streaming
  // (empty when nothing is final yet). After stop_hit() the caller cancels the generation.
  std::vector<Json> on_token(const runtime::Sampled& tok, const runtime::TokenEvent& ev);
  bool stop_hit() const { return stop_.hit(); }

  // Ends the generation with the scheduler's finish reason (kStop/kLength; kCancelled after a
  // stop string counts as "stop"). Returns the remaining SSE payloads: flushed deltas, the chunk
  // carrying finish_reason (with timings), and with include_usage the usage chunk.
  std::vector<Json> finish(runtime::FinishReason reason, const runtime::TokenEvent& last);
  // The non-streamed response body; call after finish().
  Json response() const;

  // The first SSE chunk of a chat stream (role "assistant", empty content).
  Json role_chunk() const;
  const std::string& finish_reason() const { return finish_reason_; }

 private:
  std::vector<Json> feed_text(const std::string& text, bool at_end);
  Json chunk(Json delta) const;
  Json logprob_entry(const runtime::Sampled& s) const;

  PreparedRequest req_;
  const Tokenizer* tok_;
  std::string id_;
  int64_t created_;
  StreamDecoder decoder_;
  StopMatcher stop_;
  chat::StreamParser parser_;
  chat::ParsedMessage message_;   // chat: accumulated
  std::string text_;              // completion: accumulated
  Json pending_logprobs_ = Json::array();  // tokens not yet attached to a chunk (stream)
  Json all_logprobs_ = Json::array();
  int tool_index_ = 0;
  int64_t call_counter_ = 0;
  bool in_reasoning_inline_ = false;  // reasoning_format none: "<think>" opened
  std::string finish_reason_;
  runtime::TokenEvent last_;
};

// A tool-call id: "call_" + 24 random alphanumerics (unique per process run).
std::string make_call_id();
// "chatcmpl-…" / "cmpl-…" ids.
std::string make_request_id(std::string_view prefix);

}  // namespace dsv4::server
