// See text_search.h.
#include "cpu/text_search.h"

#include <algorithm>

namespace fastllm {
namespace text {
namespace {

uint32_t lower(uint32_t c) { return c - 'A' < 26u ? c | 0x20 : c; }

template <typename Char>
bool matches_at(const Char* s, const std::string& needle) {
  for (size_t k = 0; k < needle.size(); ++k)
    if (lower(s[k]) != static_cast<unsigned char>(needle[k])) return false;
  return true;
}

// Blocks of 64 starts: flags for "the first two characters match" (a loop the compiler
// vectorizes), then a full comparison only where a flag is set, which is rare.
template <typename Char>
bool contains_ignore_case(const Char* s, int64_t n, const std::string& needle) {
  const int64_t m = static_cast<int64_t>(needle.size());
  const uint32_t c0 = static_cast<unsigned char>(needle[0]);
  const uint32_t c1 = m > 1 ? static_cast<unsigned char>(needle[1]) : 0;
  const int64_t starts = n - m + 1;
  uint8_t hit[64];
  for (int64_t base = 0; base < starts; base += 64) {
    const int64_t len = std::min<int64_t>(64, starts - base);
    const Char* p = s + base;
    uint8_t any = 0;
    // lower(c) == x implies c | 0x20 == x | 0x20: a superset of the starts, without branches
    // (the compiler vectorizes these loops); matches_at then compares exactly.
    const Char a0 = static_cast<Char>(c0 | 0x20), a1 = static_cast<Char>(c1 | 0x20);
    if (m > 1) {
      for (int64_t j = 0; j < len; ++j) {
        hit[j] = static_cast<uint8_t>((static_cast<Char>(p[j] | 0x20) == a0) &
                                      (static_cast<Char>(p[j + 1] | 0x20) == a1));
        any |= hit[j];
      }
    } else {
      for (int64_t j = 0; j < len; ++j) {
        hit[j] = static_cast<uint8_t>(static_cast<Char>(p[j] | 0x20) == a0);
        any |= hit[j];
      }
    }
    if (!any) continue;
    for (int64_t j = 0; j < len; ++j)
      if (hit[j] && matches_at(p + j, needle)) return true;
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
  for (const uint32_t u : unsafe) {
    if (u > static_cast<Char>(~Char{0})) continue;  // not in this kind of string (U+0130 in Latin-1)
    const Char c = static_cast<Char>(u);
    int64_t found = 0;  // a count, not an early exit: the compiler vectorizes the scan
    for (int64_t i = 0; i < n; ++i) found += s[i] == c;
    if (found) return -1;
  }
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
