// dsv4 core: read-only view of a whole file, memory-mapped or read into memory.
//
// Lifetime: the bytes live as long as the MappedFile; spans taken from data() dangle after it is
// destroyed or moved from. Thread-safe for concurrent reads. Empty files give an empty span.
//
// Model weights are streamed from memory once per token, so how they are held matters: with
// 4 KiB page-cache pages a decode step walks hundreds of thousands of page-table entries, and
// cold pages of a mapped file (experts seldom routed to) can be reclaimed and read back from disk
// in the middle of a decode step. Measured on flash-2l (bench/RESULTS.md, "Weights in 2 MiB
// pages"): reading the file into anonymous 2 MiB pages decodes ~1.3x faster than a plain mapping
// and ~1.1x faster than a mapping of the same file in 2 MiB page-cache folios. The cost is load
// time (the copy, and the kernel zeroing the pages first) and memory not shared with the page
// cache. MapOptions::hugepages asks for 2 MiB pages (Linux transparent huge pages):
//   kMmap  the mapping is 2 MiB-aligned and advised MADV_HUGEPAGE, so page-cache folios of 2 MiB
//          are mapped by one page-table entry each (whether the cache holds the file in such
//          folios is the kernel's choice). Populated up front when the file fits in the available
//          memory (as llama.cpp's MAP_POPULATE), so no page faults land in decode steps.
//   kRead  the file is read (pread) into anonymous memory advised MADV_HUGEPAGE (llama.cpp's
//          --no-mmap, plus the huge pages).
//   kAuto  kRead when the file takes at most half of the machine's memory and fits in what is
//          available now; kMmap otherwise (a model larger than memory stays demand-paged).
// huge_bytes() reports what the kernel actually gave (from /proc/self/smaps; 0 where unknown).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "dsv4/core/status.h"

namespace dsv4 {

enum class LoadMode : uint8_t { kAuto, kMmap, kRead };

// "auto", "mmap", "read".
const char* load_mode_name(LoadMode m);

struct MapOptions {
  LoadMode mode = LoadMode::kMmap;
  bool hugepages = false;  // see above; plain mmap (or a plain read) when false
};

class MappedFile {
 public:
  // Errors: kIo naming the path and the OS reason (missing file, directory, permission, mmap,
  // a read error or a file that shrank while being read).
  static Result<MappedFile> open(const std::string& path, MapOptions opts = {});

  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> data() const { return {data_, size_}; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // kMmap or kRead: how the bytes are held (never kAuto).
  LoadMode mode() const { return mode_; }
  // Bytes of data() backed by 2 MiB pages when the file was opened (0 where unknown).
  size_t huge_bytes() const { return huge_bytes_; }

 private:
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t map_size_ = 0;  // length of the region to munmap (≥ size_)
  void* map_base_ = nullptr;
  std::string path_;
  LoadMode mode_ = LoadMode::kMmap;
  size_t huge_bytes_ = 0;
};

}  // namespace dsv4
