// dsv4 core: error reporting without exceptions across library boundaries.
//
// Every operation that can fail on bad input (a file, a request) returns a Status or a
// Result<T>. The message names the thing at fault (key, tensor, byte offset). Aborts are
// reserved for broken invariants of our own code (DSV4_CHECK).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace dsv4 {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // a caller-supplied value is out of range or malformed
  kInvalidFile,      // a file's bytes break its format's rules
  kUnsupported,      // well-formed but not something dsv4 handles
  kNotFound,         // a named key/tensor/file is missing
  kIo,               // the OS refused (open, mmap, read)
  kOutOfMemory,
  kUnavailable,      // busy: a queue is full or the service is shutting down (HTTP 503)
};

const char* error_code_name(ErrorCode c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_file: <message>"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// A value or an error. Access to value() on an error is a programming bug and aborts.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).is_ok()) {
      std::fprintf(stderr, "dsv4: Result constructed from an ok Status\n");
      std::abort();
    }
  }
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }

 private:
  T& checked() {
    if (!is_ok()) {
      std::fprintf(stderr, "dsv4: value() on error: %s\n", std::get<Status>(v_).to_string().c_str());
      std::abort();
    }
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

// Aborts with file:line on a broken internal invariant. Never use for input validation.
#define DSV4_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "dsv4: internal check failed: %s at %s:%d\n", #cond, __FILE__, \
                   __LINE__);                                                             \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#define DSV4_RETURN_IF_ERROR(expr)       \
  do {                                   \
    ::dsv4::Status dsv4_st_ = (expr);    \
    if (!dsv4_st_.is_ok()) return dsv4_st_; \
  } while (0)

}  // namespace dsv4
