// dsv4 tokenizer: DeepSeek-V3/V4 byte-level BPE loaded from a Hugging Face tokenizer.json.
//
// Pipeline (docs: ../shared/docs/tokenizer-and-chat.md §1):
//   [encode_rendered only] split on added tokens, longest match first (first the added tokens with
//   normalized=false, then those with normalized=true in the gaps, as HF tokenizers does) →
//   pre-tokenizer: the file's Sequence of Split(Regex, Isolated) steps, run with PCRE2 (UTF + UCP)
//   → GPT-2 byte map → BPE by merge rank.
//
// Unicode version: Unicode 16.0.0, the version of the reference (the Oniguruma tables inside HF
// tokenizers 0.23.3). PCRE2 10.42 itself has Unicode 14.0.0 tables, so the loader widens \p{L}
// \p{M} \p{N} \p{P} \p{S} with the ranges Unicode 15.0–16.0 assigned (unicode_extras.inc) and
// spells \s / \S as the White_Space property (PCRE2's \s also matches U+180E; Oniguruma's does
// not). Verified: pieces equal HF's for every code point U+0000–U+10FFFF in 12 contexts.
//
// Two entry points, one policy each:
//   encode_text     plain user text. Added tokens are NOT matched: a user typing `<｜User｜>` gets
//                   ordinary BPE tokens. Reference: HF tokenizers on tokenizer.json with
//                   added_tokens emptied.
//   encode_rendered text the chat renderer produced; added tokens are matched. Reference: HF
//                   tokenizers on the unmodified tokenizer.json.
// BOS is never added. Invalid UTF-8 input is rejected with kInvalidArgument naming the byte offset.
//
// Decoding: added tokens come out as their literal UTF-8 content, other tokens through the inverse
// byte map. decode() replaces invalid UTF-8 in the byte stream with U+FFFD, one per maximal
// invalid subpart (the WHATWG / Python "replace" rule); StreamDecoder yields the same text piece by
// piece, holding back an incomplete trailing sequence until more bytes or finish().
//
// Lifetime/threading: a Tokenizer is immutable after loading; all const methods may be called from
// many threads at once. Movable, not copyable. Token ids are int32_t in [0, vocab_size()).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dsv4/core/status.h"

namespace dsv4 {

class GgufFile;
using TokenId = int32_t;

struct AddedToken {
  TokenId id = 0;
  std::string content;  // raw UTF-8, not byte-mapped
  bool special = false;
  bool normalized = false;
};

// Work counters for one encode call, so tests can check that cost is linear in the input.
struct EncodeStats {
  int64_t bytes_in = 0;          // input bytes
  int64_t pieces = 0;            // pre-tokenizer pieces handed to BPE
  int64_t bpe_symbols = 0;       // initial byte symbols over all pieces
  int64_t merge_steps = 0;       // merges applied (≤ bpe_symbols − pieces)
  int64_t queue_pushes = 0;      // candidate pairs pushed into the merge queue
  int64_t queue_pops = 0;        // candidate pairs popped (applied or stale)
  int64_t added_tokens = 0;      // added tokens matched (encode_rendered)
  int64_t regex_matches = 0;     // regex matches over all pre-tokenizer stages
};

class Tokenizer {
 public:
  // Loads a tokenizer.json (BPE model, ByteLevel pre-tokenizer/decoder, Split regex stages,
  // added_tokens). Errors: kIo (file), kInvalidFile (malformed JSON or fields, a merge whose parts
  // or result are not in the vocabulary, a bad regex), kUnsupported (a model, normalizer or
  // pre-tokenizer shape dsv4 does not implement; the message names it).
  static Result<Tokenizer> from_file(const std::string& path);
  // Same from JSON text already in memory; `source` names it in error messages.
  static Result<Tokenizer> from_json(std::string_view json, const std::string& source);
  // From GGUF metadata: tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "deepseek-v3" or
  // "joyai-llm" (the same regexes), .tokens, .token_type (3 control → special added token,
  // 4 user-defined → non-special added token), .merges. The GgufFile may be dropped afterwards.
  // Errors: kNotFound (missing key), kInvalidFile, kUnsupported (other model or pre-type).
  // Limitation: GGUF does not record HF's per-token `normalized` flag; user-defined tokens are
  // taken as normalized (HF's default), which only matters if two added tokens overlap in a text.
  static Result<Tokenizer> from_gguf(const GgufFile& gguf, const std::string& source);

  // A moved-from Tokenizer may only be destroyed or assigned to.
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Plain user text → ids (no added-token matching). Error: kInvalidArgument on invalid UTF-8,
  // or if the regex engine gives up (match/heap limit) on pathological input.
  Result<std::vector<TokenId>> encode_text(std::string_view text, EncodeStats* stats = nullptr) const;
  // Rendered prompt text → ids, added tokens matched longest-first. Errors as encode_text.
  Result<std::vector<TokenId>> encode_rendered(std::string_view text,
                                               EncodeStats* stats = nullptr) const;

  // The pre-tokenizer alone: byte ranges [begin, end) of the pieces of `text` (no added tokens).
  // Error: kInvalidArgument on invalid UTF-8.
  Result<std::vector<std::pair<size_t, size_t>>> pre_tokenize(std::string_view text) const;

  // Concatenated bytes of the tokens; may be invalid UTF-8 (a token can end inside a character).
  // Error: kInvalidArgument naming the first id out of range.
  Result<std::string> decode_bytes(std::span<const TokenId> ids) const;
  // decode_bytes with invalid UTF-8 replaced by U+FFFD (one per maximal invalid subpart).
  Result<std::string> decode(std::span<const TokenId> ids) const;

  // The bytes one token stands for (literal content for added tokens). Precondition: valid id
  // (checked; aborts otherwise — validate with is_valid_id first).
  const std::string& token_bytes(TokenId id) const;
  // The token's string as stored in the file (byte-mapped for BPE tokens, literal for added ones).
  const std::string& token_text(TokenId id) const;
  bool is_valid_id(TokenId id) const;
  bool is_added(TokenId id) const;
  bool is_special(TokenId id) const;  // added token with special=true (BOS, EOS, placeholders…)
  // Id of an added token with exactly this content, or of a vocabulary entry with this stored
  // string; nullopt if none.
  std::optional<TokenId> find_token(std::string_view text) const;

  int64_t vocab_size() const;  // 1 + the largest id
  size_t merge_count() const;
  const std::vector<AddedToken>& added_tokens() const;

 private:
  Tokenizer();
  struct Spec;  // what the loaders read, before validation
  static Result<Tokenizer> build(Spec& spec, const std::string& source);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Bytes → complete UTF-8, for streaming. push() returns the text that is final so far: valid
// sequences, and U+FFFD for every invalid subpart that no later byte can repair; an incomplete
// trailing sequence (1–3 bytes) is held back. finish() returns the held tail as one U+FFFD (or ""),
// and resets. The concatenation of all outputs equals utf8_replace_invalid(all bytes) for every
// split of the input. Not thread-safe (one per stream).
class Utf8StreamBuffer {
 public:
  std::string push(std::string_view bytes);
  std::string finish();
  size_t pending() const { return tail_.size(); }

 private:
  std::string tail_;
};

// Replaces each maximal invalid subpart of `bytes` with U+FFFD (EF BF BD).
std::string utf8_replace_invalid(std::string_view bytes);

// Token ids → text, one id at a time, equal in concatenation to Tokenizer::decode of all ids.
// Holds a reference to the tokenizer, which must outlive it. Not thread-safe.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
  // Error: kInvalidArgument for an id out of range (the stream state is unchanged).
  Result<std::string> push(TokenId id);
  std::string finish() { return buf_.finish(); }
  size_t pending_bytes() const { return buf_.pending(); }

 private:
  const Tokenizer* tok_;
  Utf8StreamBuffer buf_;
};

}  // namespace dsv4
