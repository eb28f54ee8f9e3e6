// DeepSeek-V4 chat protocol text: every literal string the renderer and parser use, in one place.
//
// Source: the official encoder `encoding_dsv4.py` (HF deepseek-ai/DeepSeek-V4-Flash, folder
// encoding/), as vendored unchanged by vLLM in `vllm/tokenizers/deepseek_v4_encoding.py`:
//   preview: vllm 0.20.0, sha256 582f735bf75ad5fbe2b4a8801d8280a65ff0e41175874249bd62433e78c487ff
//   0731:    vllm 0.33.0, sha256 aa407637bd2e58f20a16f781ea0bc519d06f74bed49deadaecb5aa5756d7230e
// (tests/fixtures/chat/provenance.json; ../shared/docs/tokenizer-and-chat.md §3.2, §3.4).
// The two revisions differ only in the reasoning-effort prefixes.
#pragma once

#include <string_view>

namespace dsv4::chat::text {

inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";
inline constexpr std::string_view kDsml = "｜DSML｜";
inline constexpr std::string_view kDsmlAscii = "|DSML|";  // malformed variant models emit; parse only
inline constexpr std::string_view kUser = "<｜User｜>";
inline constexpr std::string_view kAssistant = "<｜Assistant｜>";
inline constexpr std::string_view kLatestReminder = "<｜latest_reminder｜>";

// Quick-instruction task tokens (DS_TASK_SP_TOKENS).
struct TaskToken {
  std::string_view task;
  std::string_view token;
};
inline constexpr TaskToken kTaskTokens[] = {
    {"action", "<｜action｜>"}, {"query", "<｜query｜>"},   {"authority", "<｜authority｜>"},
    {"domain", "<｜domain｜>"}, {"title", "<｜title｜>"},   {"read_url", "<｜read_url｜>"},
};

inline constexpr std::string_view kResponseFormatPrefix =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";
inline constexpr std::string_view kToolResultOpen = "<tool_result>";
inline constexpr std::string_view kToolResultClose = "</tool_result>";
inline constexpr std::string_view kToolCallsBlockName = "tool_calls";

// TOOLS_TEMPLATE with {dsml_token}/{thinking_*_token} already substituted; {tool_schemas} sits
// between kToolsTemplateHead and kToolsTemplateTail.
inline constexpr std::string_view kToolsTemplateHead =
    "## Tools\n"
    "\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by "
    "writing a \"<｜DSML｜tool_calls>\" block like the following:\n"
    "\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n"
    "\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n"
    "\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n"
    "\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n"
    "\n"
    "### Available Tool Schemas\n"
    "\n";
inline constexpr std::string_view kToolsTemplateTail =
    "\n"
    "\n"
    "You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

// Reasoning-effort prefixes (inserted after BOS at message index 0, thinking mode only).
inline constexpr std::string_view kEffortAbsoluteMaximum =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve "
    "the root cause, rigorously stress-testing your logic against all potential paths, edge cases, "
    "and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";
inline constexpr std::string_view kEffortBeyondMaximum =
    "Reasoning Effort: Beyond maximum — exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: "
    "exhaustively decompose the problem into its most fundamental components, trace every causal "
    "chain to its root, and resolve the underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple angles "
    "and are certain that no assumption remains unchecked and no error remains undiscovered.\n\n";
// preview: effort None/"high" -> "", "max" -> kEffortAbsoluteMaximum.
// 0731:    effort None/"low" -> "", "high" -> kEffortAbsoluteMaximum, "max" -> kEffortBeyondMaximum.

}  // namespace dsv4::chat::text
