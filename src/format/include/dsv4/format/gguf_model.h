// dsv4 format: a model stored as one GGUF file or as a split set of shards
// ("<stem>-00001-of-00005.gguf" ... ; gguf-and-llama-cpp.md §3.1).
//
// Each shard is a complete GGUF with its own header and the keys split.no (u16),
// split.count (u16) and split.tensors.count (i32). Shard 1 carries the model metadata and may
// hold no tensors. Opening any shard opens the whole set. Rejected (reliability.md G13): a
// missing shard, split.count or split.tensors.count disagreeing between shards, split.no not
// matching the file name, the same tensor in two shards, a tensor total different from
// split.tensors.count. Errors name the shard file.
//
// Lifetime/threading: as GgufFile (immutable after open; pointers stay valid while it lives).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf.h"

namespace dsv4 {

class GgufModel {
 public:
  static Result<GgufModel> open(const std::string& path, GgufParseOptions opts = {});
  // Wraps an already-parsed single file (tests, fuzzers).
  static Result<GgufModel> from_file(GgufFile f);

  // The shard holding the model metadata (shard 1, or the only file).
  const GgufFile& meta() const { return *shards_.front(); }
  const GgufValue* find(std::string_view key) const { return meta().find(key); }
  size_t n_shards() const { return shards_.size(); }
  const GgufFile& shard(size_t i) const { return *shards_[i]; }
  const std::vector<std::string>& paths() const { return paths_; }
  // Over the opened shards (0 / "" for a model wrapped by from_file): bytes held, bytes in huge
  // pages, and how they are held ("mmap", "read", or "mmap+read" when shards differ).
  size_t held_bytes() const;
  size_t huge_bytes() const;
  std::string load_mode() const;

  // Tensors of every shard, in shard order.
  const std::vector<const GgufTensorInfo*>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;

 private:
  Status index();
  std::vector<std::unique_ptr<GgufFile>> shards_;
  std::vector<std::string> paths_;
  std::vector<const GgufTensorInfo*> tensors_;
  std::map<std::string_view, const GgufTensorInfo*, std::less<>> by_name_;
};

// If `path` names a shard "<stem>-NNNNN-of-MMMMM.gguf", returns {stem, NNNNN, MMMMM}.
struct SplitName {
  std::string stem;
  int no = 0;
  int count = 0;
};
bool parse_split_name(const std::string& path, SplitName& out);
std::string split_path(const std::string& stem, int no, int count);

}  // namespace dsv4
