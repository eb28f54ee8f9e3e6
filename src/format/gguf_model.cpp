#include "dsv4/format/gguf_model.h"

#include <cstdio>

namespace dsv4 {

bool parse_split_name(const std::string& path, SplitName& out) {
  // "<stem>-NNNNN-of-MMMMM.gguf": 5 digits each, as llama.cpp's gguf-split writes them.
  constexpr size_t kTail = 1 + 5 + 4 + 5 + 5;  // "-NNNNN-of-MMMMM.gguf"
  if (path.size() <= kTail) return false;
  const std::string t = path.substr(path.size() - kTail);
  auto digits = [&](size_t at) {
    int v = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (t[i] < '0' || t[i] > '9') return -1;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  if (t[0] != '-' || t.compare(6, 4, "-of-") != 0 || t.compare(15, 5, ".gguf") != 0) return false;
  const int no = digits(1), count = digits(10);
  if (no < 1 || count < 1 || no > count) return false;
  out = {path.substr(0, path.size() - kTail), no, count};
  return true;
}

std::string split_path(const std::string& stem, int no, int count) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", no, count);
  return stem + buf;
}

namespace {

// Reads split.* of a shard; returns false if the shard has no split keys.
Status split_keys(const GgufFile& f, const std::string& path, int64_t& no, int64_t& count,
                  int64_t& tensors) {
  const GgufValue* n = f.find("split.no");
  const GgufValue* c = f.find("split.count");
  const GgufValue* t = f.find("split.tensors.count");
  if (n == nullptr && c == nullptr && t == nullptr) {
    no = 0;
    count = 1;
    tensors = static_cast<int64_t>(f.tensors().size());
    return Status::ok();
  }
  if (n == nullptr || c == nullptr || t == nullptr || !n->as_i64() || !c->as_i64() ||
      !t->as_i64()) {
    return Status(ErrorCode::kInvalidFile,
                  path + ": split.no, split.count and split.tensors.count must all be integers");
  }
  no = *n->as_i64();
  count = *c->as_i64();
  tensors = *t->as_i64();
  if (count < 1 || no < 0 || no >= count || tensors < 0) {
    return Status(ErrorCode::kInvalidFile, path + ": split.no = " + std::to_string(no) +
                                               ", split.count = " + std::to_string(count) +
                                               " is not a valid shard position");
  }
  return Status::ok();
}

}  // namespace

Result<GgufModel> GgufModel::open(const std::string& path, GgufParseOptions opts) {
  GgufModel m;
  SplitName sn;
  const bool named = parse_split_name(path, sn);
  const int count = named ? sn.count : 1;
  for (int i = 1; i <= count; ++i) {
    const std::string p = named ? split_path(sn.stem, i, count) : path;
    auto f = GgufFile::open(p, opts);
    if (!f) {
      if (named && f.status().code() == ErrorCode::kIo) {
        return Status(ErrorCode::kNotFound, "shard " + std::to_string(i) + " of " +
                                                std::to_string(count) + " is missing or unreadable: " +
                                                f.status().message());
      }
      return f.status();
    }
    m.shards_.push_back(std::make_unique<GgufFile>(std::move(f).value()));
    m.paths_.push_back(p);
  }
  // split.* consistency
  int64_t total = -1;
  for (size_t i = 0; i < m.shards_.size(); ++i) {
    int64_t no = 0, cnt = 0, tensors = 0;
    DSV4_RETURN_IF_ERROR(split_keys(*m.shards_[i], m.paths_[i], no, cnt, tensors));
    if (!named && cnt > 1) {
      return Status(ErrorCode::kInvalidFile,
                    path + ": split.count = " + std::to_string(cnt) +
                        " but the file name is not of the form <stem>-00001-of-0000N.gguf, so the "
                        "other shards cannot be found");
    }
    if (named && (cnt != count || no != static_cast<int64_t>(i))) {
      return Status(ErrorCode::kInvalidFile,
                    m.paths_[i] + ": split.no = " + std::to_string(no) + ", split.count = " +
                        std::to_string(cnt) + " do not match its name (shard " +
                        std::to_string(i + 1) + " of " + std::to_string(count) + ")");
    }
    if (total >= 0 && tensors != total) {
      return Status(ErrorCode::kInvalidFile,
                    m.paths_[i] + ": split.tensors.count = " + std::to_string(tensors) +
                        " differs from shard 1's " + std::to_string(total) +
                        " (shards of different models?)");
    }
    total = tensors;
  }
  DSV4_RETURN_IF_ERROR(m.index());
  if (static_cast<int64_t>(m.tensors_.size()) != total) {
    return Status(ErrorCode::kInvalidFile,
                  path + ": the shards hold " + std::to_string(m.tensors_.size()) +
                      " tensors, split.tensors.count says " + std::to_string(total));
  }
  return m;
}

Result<GgufModel> GgufModel::from_file(GgufFile f) {
  GgufModel m;
  m.shards_.push_back(std::make_unique<GgufFile>(std::move(f)));
  m.paths_.push_back("(memory)");
  DSV4_RETURN_IF_ERROR(m.index());
  return m;
}

Status GgufModel::index() {
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const auto& t : shards_[i]->tensors()) {
      if (!by_name_.emplace(t.name, &t).second) {
        return Status(ErrorCode::kInvalidFile, paths_[i] + ": tensor '" + std::string(t.name) +
                                                   "' also appears in an earlier shard");
      }
      tensors_.push_back(&t);
    }
  }
  return Status::ok();
}

size_t GgufModel::held_bytes() const {
  size_t n = 0;
  for (const auto& s : shards_) n += s->mapped() != nullptr ? s->mapped()->size() : 0;
  return n;
}

size_t GgufModel::huge_bytes() const {
  size_t n = 0;
  for (const auto& s : shards_) n += s->mapped() != nullptr ? s->mapped()->huge_bytes() : 0;
  return n;
}

std::string GgufModel::load_mode() const {
  bool mmap = false, read = false;
  for (const auto& s : shards_) {
    if (s->mapped() == nullptr) continue;
    (s->mapped()->mode() == LoadMode::kRead ? read : mmap) = true;
  }
  return mmap && read ? "mmap+read" : read ? "read" : mmap ? "mmap" : "";
}

const GgufTensorInfo* GgufModel::find_tensor(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

}  // namespace dsv4
