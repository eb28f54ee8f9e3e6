// dsv4 server: OpenAI request parsing and validation (issue 6 scope 2, reliability.md §C.2–C.3).
//
// Everything here is pure and socket-free: the HTTP handlers (http.cpp) only move bytes in and
// out; this file turns a request body into a runtime::GenRequest plus the per-request output
// settings, or into an ApiError with the OpenAI error shape. Unit tests: tests/server/api_test.cpp.
//
// Policies (docs/server.md):
// - The body must be a JSON object; malformed JSON, invalid UTF-8 (raw bytes or lone surrogate
//   escapes), nesting deeper than Limits::max_json_depth, NaN/Infinity literals and numbers that
//   overflow a double → 400 invalid_request_error (the message carries the byte offset).
// - Every numeric parameter is range-checked here, before any size arithmetic; out of range →
//   400 naming `param`. `null` for an optional field means "not given" (as OpenAI does).
// - Token ids (prompt arrays, /detokenize, stop_token_ids) must be in [0, n_vocab) → else 400.
// - n must be 1; tool_choice "required" / a named function are accepted but not enforced.
// - A prompt that leaves no room to generate (n_prompt ≥ n_ctx) → 400 context_length_exceeded
//   with both numbers; max_tokens beyond the context end gives finish_reason "length".
//
// Threading: all functions are reentrant; the Tokenizer is only read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/chat/chat.h"
#include "dsv4/runtime/scheduler.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace dsv4::server {

using Json = chat::Json;  // ordered: tool schemas are rendered in the client's key order

// An error answered to the client: {"error":{"message","type","param","code"}} + HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" → null
  std::string code;   // "" → null
  Json extra;         // more fields merged into "error" (e.g. n_prompt_tokens, n_ctx)
  Json to_json() const;
};
ApiError bad_request(std::string message, std::string param = {}, std::string code = {});

// Size limits on what a request may carry (docs/server.md "Limits").
struct Limits {
  size_t max_body_bytes = 16u << 20;      // larger → 413 (enforced by the HTTP layer)
  size_t max_header_bytes = 64u << 10;    // all header lines together → 431
  size_t max_header_count = 128;          // → 431
  int max_json_depth = 64;                // nesting of [ and { → 400
  uint64_t max_json_key_cost = 16u << 20; // Σ k² over objects with k keys → 400 (4096 keys in one)
  size_t max_messages = 4096;
  size_t max_stop = 16;                   // stop strings
  size_t max_stop_bytes = 1024;           // per stop string
  size_t max_tools = 128;
  size_t max_tools_bytes = 1u << 20;      // tools array, serialised
  size_t max_response_format_bytes = 64u << 10;
  int max_top_logprobs = 20;
  size_t max_logit_bias = 1024;
};

// Server-wide settings that shape request handling (set from the command line).
struct ApiConfig {
  std::string model_name;                 // --alias, else the model file name
  std::vector<std::string> model_names;   // names accepted in "model" (alias, file name, path)
  int64_t n_ctx = 0;                      // per slot (engine info)
  int64_t n_vocab = 0;
  int32_t eos_id = 1;                     // <｜end▁of▁sentence｜>
  chat::Revision revision = chat::Revision::preview;
  bool default_thinking = true;           // tokenizer-and-chat.md "Decisions"
  std::string default_effort;             // "" = high
  std::string reasoning_format = "deepseek";  // "deepseek" (reasoning_content) | "none" (inline)
  Limits limits;
};

// Parses a request body: JSON object with the policy above. Content-Type is checked by the caller.
std::optional<ApiError> parse_body(std::string_view body, const Limits& limits, Json& out);

// Maximum nesting depth of [ and { outside strings (linear scan, no recursion).
int json_depth(std::string_view body);
// Depth and Σ k² over the objects' member counts k (parsing into the ordered JSON type costs
// O(k²) per object, so a body of 10^6 keys must be refused before parsing).
struct JsonShape {
  int max_depth = 0;
  uint64_t key_cost = 0;
};
JsonShape json_shape(std::string_view body);

enum class Endpoint { kChat, kCompletion };

// Everything the output side needs to know about one generation request.
struct PreparedRequest {
  Endpoint endpoint = Endpoint::kChat;
  runtime::GenRequest gen;          // prompt ids, max_tokens, sampling, stop tokens
  std::string prompt_text;          // the rendered prompt (chat) or the raw prompt ("" for ids)
  std::vector<std::string> stop;    // stop strings (never empty strings)
  bool stream = false;
  bool include_usage = false;       // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;
  bool thinking = true;             // chat: the prompt ends with <think> (parse reasoning first)
  bool reasoning_inline = false;    // reasoning_format "none": reasoning stays in content
  Json tools;                       // chat: the request's tools (typing of parsed arguments)
  std::string model;                // echoed in responses
};

// Validates and prepares /v1/chat/completions. Renders the DeepSeek-V4 prompt and tokenizes it
// (protocol text with added tokens matched; message text as plain text, so user content cannot
// forge special tokens).
std::optional<ApiError> prepare_chat(const Json& body, const ApiConfig& cfg, const Tokenizer& tok,
                                     PreparedRequest& out);
// Validates and prepares /v1/completions (prompt: a string, token ids, or a one-element array
// of either). The prompt is tokenized exactly as sent (added tokens matched, no BOS added).
std::optional<ApiError> prepare_completion(const Json& body, const ApiConfig& cfg,
                                           const Tokenizer& tok, PreparedRequest& out);

// The chat part only (messages, tools, tool_choice, response_format, thinking/effort): fills
// `rendered` with the prompt text and `thinking`. Shared by /apply-template.
struct RenderedChat {
  std::string text;
  std::vector<int32_t> ids;
  bool thinking = true;
  Json tools;  // the request's tools (null when absent)
};
std::optional<ApiError> render_chat(const Json& body, const ApiConfig& cfg, const Tokenizer& tok,
                                    bool tokenize, RenderedChat& out);

// /tokenize {"content": str, "add_special": bool, "parse_special": bool (default true),
// "with_pieces": bool} → {"tokens": [...]}.
std::optional<ApiError> handle_tokenize(const Json& body, const Tokenizer& tok, Json& out);
// /detokenize {"tokens": [ids]} → {"content": str}. Ids out of range → 400.
std::optional<ApiError> handle_detokenize(const Json& body, const Tokenizer& tok, Json& out);

// Byte-accurate checks used above (exposed for tests).
bool is_valid_utf8(std::string_view s);
// Escapes control characters, backslashes and non-printable bytes for a single log line (H16).
std::string log_escape(std::string_view s, size_t max_len = 200);
// Constant-time equality for API keys (time depends only on the lengths).
bool constant_time_equals(std::string_view a, std::string_view b);

}  // namespace dsv4::server
