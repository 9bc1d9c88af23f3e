// See text_search.h.
#include "cpu/text_search.h"

#include <algorithm>

namespace fastllm {
namespace text {
namespace {

uint32_t lower(uint32_t c) { return c - 'A' < 26u ? c | 0x20 : c; }

template <typename Char>
bool contains_ignore_case(const Char* s, int64_t n, const std::string& needle) {
  const int64_t m = static_cast<int64_t>(needle.size());
  const auto first = static_cast<unsigned char>(needle[0]);
  for (int64_t i = 0; i + m <= n; ++i) {
    if (lower(s[i]) != first) continue;
    int64_t k = 1;
    while (k < m && lower(s[i + k]) == static_cast<unsigned char>(needle[k])) ++k;
    if (k == m) return true;
  }
  return false;
}

bool is_ascii(const std::string& needle) {
  return std::all_of(needle.begin(), needle.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

template <typename Char>
int contains_any_lowered(const Char* s, int64_t n, const std::vector<std::string>& needles,
                         const std::vector<uint32_t>& unsafe) {
  for (const std::string& needle : needles)
    if (!is_ascii(needle)) return -1;
  if (sizeof(Char) > 1)
    for (int64_t i = 0; i < n; ++i)
      if (s[i] >= 0x80 && std::find(unsafe.begin(), unsafe.end(), static_cast<uint32_t>(s[i])) != unsafe.end())
        return -1;
  for (const std::string& needle : needles)
    if (needle.empty() || contains_ignore_case(s, n, needle)) return 1;
  return 0;
}

template int contains_any_lowered(const uint8_t*, int64_t, const std::vector<std::string>&,
                                  const std::vector<uint32_t>&);
template int contains_any_lowered(const uint16_t*, int64_t, const std::vector<std::string>&,
                                  const std::vector<uint32_t>&);
template int contains_any_lowered(const uint32_t*, int64_t, const std::vector<std::string>&,
                                  const std::vector<uint32_t>&);

}  // namespace text
}  // namespace fastllm
