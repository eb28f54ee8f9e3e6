// dsv4 model: checks of a GGUF's tokenizer.ggml.* metadata against the model (reliability.md G11),
// before any tokenizer is built from it: tokenizer model "gpt2" (byte-level BPE); pre-tokenizer
// one dsv4 implements exactly ("deepseek-v3", or its alias "joyai-llm": the same regexes,
// tokenizer-and-chat.md §1.2) — never a silent fallback; tokens count = vocab size; token_type
// (if present) one per token; bos/eos/pad/... ids inside the vocabulary; every merge "a b" naming
// two tokens whose concatenation is a token; no empty or invalid-UTF-8 token text.
#pragma once

#include <cstdint>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"

namespace dsv4 {

// `n_vocab`: the model's vocabulary size (HParams::n_vocab). Errors name the key and index.
Status validate_vocab_metadata(const GgufModel& f, int64_t n_vocab);

}  // namespace dsv4
