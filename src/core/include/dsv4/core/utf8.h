// dsv4 core: UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
#pragma once

#include <cstddef>
#include <string_view>

namespace dsv4 {

// Length of the longest valid UTF-8 prefix of `s`; equals s.size() iff `s` is valid.
size_t utf8_valid_prefix(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return utf8_valid_prefix(s) == s.size(); }

}  // namespace dsv4
