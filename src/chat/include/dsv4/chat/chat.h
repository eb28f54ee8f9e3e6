// dsv4 chat: the DeepSeek-V4 prompt format (rendering) and model-output parsing.
//
// Rendering reproduces the official encoder `encoding_dsv4.py` (encode_messages) byte for byte;
// tests/chat checks it against goldens produced by running that encoder
// (scripts/chat/make_goldens.py). Protocol text lives in src/chat/protocol_text.h.
//
// Threading: every function here is pure; a StreamParser is one object per generation, not
// shared between threads. Nothing throws on bad input: render returns a Status, the parsers
// accept any byte string.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsv4/core/status.h"

namespace dsv4::chat {

// Object key order matters (Python dicts keep insertion order), so everything is ordered_json.
using Json = nlohmann::ordered_json;

enum class Revision { preview, r0731 };
const char* revision_name(Revision r);  // "preview" / "0731"
// Default revision from the model file's name or embedded template text: anything containing
// "0731" is r0731, everything else preview. The caller logs the choice; a flag overrides it.
Revision detect_revision(std::string_view model_name_or_template);

struct RenderOptions {
  Revision revision = Revision::preview;
  bool thinking = true;       // thinking_mode "thinking" (true) or "chat"
  bool drop_thinking = true;  // encode_messages(drop_thinking=...)
  bool add_bos = true;        // add_default_bos_token
  // The encoder-level effort (after dsv4's alias mapping, see resolve_effort): "" = not given.
  // preview accepts "", "high", "max"; 0731 accepts "", "low", "high", "max".
  std::string reasoning_effort;
  // Additions in vLLM's vendored copy at the 0731 update (vllm 0.33.0), absent from the April
  // file: a trailing system message (or one followed by an assistant message) opens an assistant
  // turn, and image content blocks render as "<｜deepseek_image｜>" instead of
  // "[Unsupported image]". Off = the official April behaviour.
  bool vllm_additions = false;
};

// messages: an OpenAI-style array (role, content, reasoning, tool_calls, tool_call_id, tools,
// response_format, task, wo_eos; roles system/user/assistant/tool/developer/latest_reminder).
// Errors (kInvalidArgument) name the message index and field at fault.
Result<std::string> render(const Json& messages, const RenderOptions& options);

// dsv4's effort decision (tokenizer-and-chat.md, "Decisions"): maps a request's effort
// ("none", "minimal", "low", "medium", "high", "xhigh", "max"; "" = server default "high") to
// thinking on/off and the encoder effort for the revision. Unknown values are an error.
struct EffortChoice {
  bool thinking = true;
  std::string encoder_effort;
};
Result<EffortChoice> resolve_effort(Revision revision, std::string_view requested);

// Python json.dumps(value, ensure_ascii=False) with default separators, keys in stored order.
std::string py_json_dumps(const Json& value);

// ---------------------------------------------------------------------------- output parsing

struct ToolCall {
  std::string id;  // never set by the parser (DSML carries no id): the server assigns one
  std::string name;
  // Exactly what the official parser returns (decode_dsml_to_arguments): "{" + ", ".join(
  // json(key) + ": " + (json(value) if string="true" else raw value)) + "}".
  std::string arguments_text;
  // Typed: string="true" values are strings; others are parsed as JSON (coerced to a string when
  // the tool's schema says the parameter is a string, or when they are not valid JSON).
  Json arguments = Json::object();
  bool operator==(const ToolCall&) const = default;
};

struct ParsedMessage {
  std::string content;
  std::string reasoning;  // OpenAI reasoning_content
  std::vector<ToolCall> tool_calls;
  bool operator==(const ParsedMessage&) const = default;
};

struct ParseOptions {
  bool thinking = true;  // the prompt ended with <think> (reasoning comes first)
  Json tools;            // the request's OpenAI tools array (may be null): types the arguments
};

struct Delta {
  enum class Kind { reasoning, content, tool_call };
  Kind kind = Kind::content;
  std::string text;  // reasoning/content: valid UTF-8, never part of a marker
  ToolCall call;     // tool_call
};

// Streaming parser: feed model text in arbitrary chunks (even split inside UTF-8 characters or
// markers); it emits only text that cannot belong to a marker (`</think>`,
// `<｜DSML｜tool_calls>`, EOS, ...) and only complete UTF-8 (invalid bytes become U+FFFD).
// Tolerates: tool block before `</think>`, missing `</think>` (all reasoning), ASCII `|DSML|`,
// repeated `</think>` / stray `<think>` (dropped), text after EOS (ignored), unterminated
// tool blocks (complete invokes kept).
class StreamParser {
 public:
  explicit StreamParser(ParseOptions options);
  std::vector<Delta> feed(std::string_view chunk);
  std::vector<Delta> finish();  // flushes held-back text; further feeds are ignored
  bool done() const { return state_ == State::done; }

 private:
  enum class State { reasoning, content, tool_block, done };
  void step(bool at_end, std::vector<Delta>& out);
  void emit_text(std::string_view s, std::vector<Delta>& out);
  ParseOptions opts_;
  State state_;
  bool at_start_ = true;  // nothing consumed yet (a leading <think> is dropped)
  std::string pending_;
  std::string block_;
  std::string utf8_tail_;
  bool finished_ = false;
};

// Whole-text parse: the same state machine fed once. Never throws.
ParsedMessage parse(std::string_view text, const ParseOptions& options);

// Accumulates deltas into a message (adjacent text deltas concatenate).
void apply_deltas(ParsedMessage& message, const std::vector<Delta>& deltas);

}  // namespace dsv4::chat
