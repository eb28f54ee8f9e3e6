// dsv4 core: read-only memory mapping of a whole file.
//
// Lifetime: the mapping lives as long as the MappedFile; spans taken from data() dangle after it is
// destroyed or moved from. Thread-safe for concurrent reads. Empty files map to an empty span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "dsv4/core/status.h"

namespace dsv4 {

class MappedFile {
 public:
  // Errors: kIo naming the path and the OS reason (missing file, directory, permission, mmap).
  static Result<MappedFile> open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> data() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace dsv4
