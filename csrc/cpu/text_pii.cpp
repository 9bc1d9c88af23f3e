// See text_pii.h.
#include "cpu/text_pii.h"

#include <algorithm>

#include "common/check.h"

namespace fastllm {
namespace text {
namespace {

bool is_hex(uint32_t c) { return (c - '0' < 10u) || ((c | 0x20) - 'a' < 6u); }

uint32_t ascii_lower(uint32_t c) { return c - 'A' < 26u ? c | 0x20 : c; }
uint32_t ascii_upper(uint32_t c) { return c - 'a' < 26u ? c & ~0x20u : c; }

bool is_run_punct(uint32_t c) { return c == ' ' || c == '-' || c == '.' || c == '/' || c == '(' || c == ')'; }

}  // namespace

template <typename Char>
bool PiiScanner::matches(const Hint& h, const Char* s, int64_t available) {
  if (static_cast<int64_t>(h.text.size()) > available) return false;
  for (size_t k = 0; k < h.text.size(); ++k) {
    const uint32_t c = h.ignore_case ? ascii_lower(s[k]) : static_cast<uint32_t>(s[k]);
    if (c != static_cast<unsigned char>(h.text[k])) return false;
  }
  return true;
}

PiiScanner::PiiScanner(const std::vector<std::vector<std::string>>& hint_groups,
                       const std::vector<std::string>& words, const std::vector<uint32_t>& lower_to_ascii,
                       int64_t margin, DecimalTest is_decimal)
    : lower_to_ascii_(lower_to_ascii), margin_(margin), is_decimal_(is_decimal) {
  FASTLLM_CHECK(hint_groups.size() <= kSecretWord, "pii: at most ", kSecretWord, " hint groups, got ",
                hint_groups.size());
  for (size_t g = 0; g < hint_groups.size(); ++g)
    for (const std::string& h : hint_groups[g]) add_hint(h, 1u << g, false);
  for (const std::string& w : words) add_hint(w, 1u << kSecretWord, true);
}

void PiiScanner::add_hint(const std::string& text, uint32_t bit, bool ignore_case) {
  FASTLLM_CHECK(!text.empty(), "pii: empty hint string");
  for (const unsigned char c : text) {
    FASTLLM_CHECK(c < 128, "pii: hint strings must be ASCII, got ", text);
    FASTLLM_CHECK(!ignore_case || ascii_lower(c) == c, "pii: words must be lowercase, got ", text);
  }
  const unsigned char first = static_cast<unsigned char>(text[0]);
  hints_[first].push_back({text, bit, ignore_case});
  if (ignore_case && ascii_lower(first) != ascii_upper(first)) hints_[ascii_upper(first)].push_back({text, bit, true});
  // The first two characters (every case of them for a word) flag where a hint may start.
  for (const uint32_t a : {ascii_lower(first), ascii_upper(first)}) {
    if (!ignore_case && a != first) continue;
    if (text.size() == 1) {
      single_[a] = true;
      continue;
    }
    const auto second = static_cast<unsigned char>(text[1]);
    for (const uint32_t b : {ascii_lower(second), ascii_upper(second)})
      if (ignore_case || b == second) pairs_[(a * 128 + b) / 64] |= uint64_t{1} << ((a * 128 + b) % 64);
  }
}

template <typename Char>
uint32_t PiiScanner::hints(const Char* s, int64_t n) const {
  uint32_t bits = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t c = s[i];
    if (c >= 128) {
      if (std::find(lower_to_ascii_.begin(), lower_to_ascii_.end(), c) != lower_to_ascii_.end())
        bits |= 1u << kSecretWord;
      continue;
    }
    if (c == '@') bits |= 1u << kHasAt;
    if (c == ':' || c == '=') bits |= 1u << kAssignChar;
    if (c == ':' && i + 1 < n && (s[i + 1] == ':' || (i > 0 && is_hex(s[i - 1]) && is_hex(s[i + 1]))))
      bits |= 1u << kIpv6Hint;
    const uint32_t next = i + 1 < n ? static_cast<uint32_t>(s[i + 1]) : 0;
    const uint32_t pair = c * 128 + next;
    if (!single_[c] && !(next < 128 && (pairs_[pair / 64] >> (pair % 64) & 1))) continue;  // rarely passes
    for (const Hint& h : hints_[c])
      if (!(bits & h.bit) && matches(h, s + i, n - i)) bits |= h.bit;
  }
  return bits;
}

// finditer of "\d[\d \-./()]{2,}\d": from a digit, the greedy class run ends at `end`; the match
// ends after the last digit of the run at least three places on, or fails, and then so does
// every later start inside the same run.
template <typename Char>
void PiiScanner::digit_windows(const Char* s, int64_t n, std::vector<int64_t>& windows) const {
  int64_t i = 0;
  while (i < n) {
    if (!is_digit(s[i])) {
      ++i;
      continue;
    }
    int64_t end = i + 1, last_digit = -1;
    for (; end < n && (is_run_punct(s[end]) || is_digit(s[end])); ++end)
      if (end >= i + 3 && is_digit(s[end])) last_digit = end;
    if (last_digit < 0) {
      i = end;
      continue;
    }
    const int64_t a = std::max<int64_t>(0, i - margin_), b = std::min<int64_t>(n, last_digit + 1 + margin_);
    if (!windows.empty() && a <= windows.back()) windows.back() = b;
    else windows.insert(windows.end(), {a, b});
    i = last_digit + 1;
  }
}

template <typename Char>
uint32_t PiiScanner::scan(const Char* text, int64_t n, std::vector<int64_t>& windows) const {
  windows.clear();
  digit_windows(text, n, windows);
  return hints(text, n);
}

template uint32_t PiiScanner::scan(const uint8_t*, int64_t, std::vector<int64_t>&) const;
template uint32_t PiiScanner::scan(const uint16_t*, int64_t, std::vector<int64_t>&) const;
template uint32_t PiiScanner::scan(const uint32_t*, int64_t, std::vector<int64_t>&) const;

}  // namespace text
}  // namespace fastllm
