// dsv4 core: MappedFile (see mapped_file.h).
#include "dsv4/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

namespace dsv4 {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// MemTotal and MemAvailable from /proc/meminfo in bytes, 0 where unknown.
struct MemInfo {
  size_t total = 0, available = 0;
};
MemInfo read_meminfo() {
  MemInfo m;
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return m;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long kb = 0;
    if (std::sscanf(line, "MemTotal: %llu kB", &kb) == 1) m.total = static_cast<size_t>(kb) * 1024;
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) m.available = static_cast<size_t>(kb) * 1024;
  }
  std::fclose(f);
  return m;
}

// Bytes of [begin, begin + len) mapped by huge pages according to /proc/self/smaps: the
// FilePmdMapped and AnonHugePages of every mapping overlapping that range (the range is a whole
// mapping of its own, whose end is rounded up to a page). 0 where unknown.
size_t huge_bytes_in(const void* begin, size_t len) {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin), hi = lo + len;
  char line[512];
  bool inside = false;
  size_t out = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    // Mapping headers start "start-end perms" in lower-case hex; field lines ("Rss:", ...) start
    // with a capital letter.
    const char c0 = line[0];
    if ((c0 >= '0' && c0 <= '9') || (c0 >= 'a' && c0 <= 'f')) {
      uintmax_t a = 0, b = 0;
      if (std::sscanf(line, "%jx-%jx", &a, &b) == 2) inside = a < hi && b > lo;
      continue;
    }
    if (!inside) continue;
    unsigned long long kb = 0;
    if (std::sscanf(line, "FilePmdMapped: %llu kB", &kb) == 1 ||
        std::sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
      out += static_cast<size_t>(kb) * 1024;
    }
  }
  std::fclose(f);
  return out < len ? out : len;
}

// Maps len bytes (mmap's prot / flags / fd); with `aligned`, at a 2 MiB boundary inside a
// reservation of len + 2 MiB. *base / *base_len receive the region to munmap. nullptr on failure
// (errno set).
void* map_region(size_t len, int prot, int flags, int fd, bool aligned, void** base, size_t* base_len) {
  if (!aligned) {
    void* p = ::mmap(nullptr, len, prot, flags, fd, 0);
    if (p == MAP_FAILED) return nullptr;
    *base = p;
    *base_len = len;
    return p;
  }
  void* q = ::mmap(nullptr, len + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (q == MAP_FAILED) return nullptr;
  *base = q;
  *base_len = len + kHugePage;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(q) + kHugePage - 1) & ~uintptr_t{kHugePage - 1};
  void* p = ::mmap(reinterpret_cast<void*>(a), len, prot, flags | MAP_FIXED, fd, 0);
  return p == MAP_FAILED ? nullptr : p;  // on failure the reservation is unmapped by reset()
}

void advise_huge([[maybe_unused]] void* p, [[maybe_unused]] size_t len) {
#ifdef MADV_HUGEPAGE
  (void)::madvise(p, len, MADV_HUGEPAGE);  // no THP in this kernel: plain pages, not an error
#endif
}

Status io_error(const std::string& what, const std::string& path, int e) {
  return Status(ErrorCode::kIo, what + " '" + path + "': " + std::strerror(e));
}

}  // namespace

const char* load_mode_name(LoadMode m) {
  switch (m) {
    case LoadMode::kAuto: return "auto";
    case LoadMode::kMmap: return "mmap";
    case LoadMode::kRead: return "read";
  }
  return "?";
}

Result<MappedFile> MappedFile::open(const std::string& path, MapOptions opts) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return io_error("cannot stat", path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(ErrorCode::kIo, "'" + path + "' is not a regular file");
  }
  MappedFile mf;
  mf.path_ = path;
  mf.size_ = static_cast<size_t>(st.st_size);
  mf.mode_ = opts.mode == LoadMode::kRead ? LoadMode::kRead : LoadMode::kMmap;
  if (mf.size_ == 0) {
    ::close(fd);
    return mf;
  }
  // Memory figures only where a decision needs them (auto, or populating a huge-page mapping).
  const MemInfo mem = opts.mode == LoadMode::kAuto || opts.hugepages ? read_meminfo() : MemInfo{};
  if (opts.mode == LoadMode::kAuto && mem.total != 0 && mf.size_ <= mem.total / 2 &&
      mf.size_ <= mem.available) {
    mf.mode_ = LoadMode::kRead;
  }

  if (mf.mode_ == LoadMode::kMmap) {
    void* p = map_region(mf.size_, PROT_READ, MAP_PRIVATE, fd, opts.hugepages, &mf.map_base_, &mf.map_size_);
    if (p == nullptr) {
      int e = errno;
      ::close(fd);
      return io_error("cannot mmap", path, e);
    }
    ::close(fd);
    mf.data_ = static_cast<const uint8_t*>(p);
    if (opts.hugepages) {
      advise_huge(p, mf.size_);
      // Populate now when the file fits in memory, so that decode steps never fault (and the
      // huge-page count below is real); a file larger than memory stays demand-paged.
#ifdef MADV_POPULATE_READ
      if (mem.available != 0 && mf.size_ <= mem.available) (void)::madvise(p, mf.size_, MADV_POPULATE_READ);
#endif
      mf.huge_bytes_ = huge_bytes_in(p, mf.size_);
    }
    return mf;
  }

  // kRead: anonymous memory (2 MiB-aligned and advised for huge pages when asked), filled by pread.
  void* p = map_region(mf.size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, opts.hugepages,
                       &mf.map_base_, &mf.map_size_);
  if (p == nullptr) {
    int e = errno;
    ::close(fd);
    return io_error("cannot allocate memory to read", path, e);
  }
  mf.data_ = static_cast<const uint8_t*>(p);
  if (opts.hugepages) advise_huge(p, mf.size_);
  size_t off = 0;
  while (off < mf.size_) {
    const size_t want = std::min(mf.size_ - off, size_t{64} << 20);
    const ssize_t n = ::pread(fd, static_cast<uint8_t*>(p) + off, want, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : 0;
      ::close(fd);
      if (n == 0) {
        return Status(ErrorCode::kIo, "cannot read '" + path + "': the file ended at byte " +
                                          std::to_string(off) + " of " + std::to_string(mf.size_) +
                                          " (changed while being read?)");
      }
      return io_error("cannot read", path, e);
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  (void)::mprotect(p, mf.size_, PROT_READ);  // weights are read-only, as when mapped
  if (opts.hugepages) mf.huge_bytes_ = huge_bytes_in(p, mf.size_);
  return mf;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      map_size_(std::exchange(o.map_size_, 0)),
      map_base_(std::exchange(o.map_base_, nullptr)),
      path_(std::move(o.path_)),
      mode_(o.mode_),
      huge_bytes_(std::exchange(o.huge_bytes_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    map_size_ = std::exchange(o.map_size_, 0);
    map_base_ = std::exchange(o.map_base_, nullptr);
    path_ = std::move(o.path_);
    mode_ = o.mode_;
    huge_bytes_ = std::exchange(o.huge_bytes_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::reset() {
  if (map_base_ != nullptr) ::munmap(map_base_, map_size_);
  map_base_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
  size_ = 0;
  huge_bytes_ = 0;
}

}  // namespace dsv4
