// The anchors of fastllm/data/pii.py's detectors, found in one pass over a text's code points, so
// each Python regex runs only where it can match:
//
//   hint bits      bit k: one of the k-th group of hint strings occurs (the secret detectors'
//                  literal prefixes); plus kHasAt ('@'), kIpv6Hint ("[0-9A-Fa-f]:[0-9A-Fa-f]|::"),
//                  kAssignChar (':' or '=') and kSecretWord: one of the words occurs in
//                  text.lower(), or may: the text holds one of `lower_to_ascii`, the characters
//                  whose lowercase holds ASCII (U+212A KELVIN SIGN -> 'k'); without them, an ASCII
//                  word occurs in text.lower() just where it occurs ignoring ASCII case
//   digit windows  the matches of "\d[\d \-./()]{2,}\d" (\d: any Unicode decimal digit, as in
//                  Python's re), each widened by `margin` on both sides and clamped to the text,
//                  overlapping or touching windows merged: what pii._digit_windows_ref returns
//
// Tested against the regex versions on hypothesis-generated text (tests/data/test_text_native.py).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastllm {
namespace text {

constexpr int kSecretWord = 28, kHasAt = 29, kIpv6Hint = 30, kAssignChar = 31;  // hint groups: bits 0..27

// Decides \d for code points >= 128 (the binding passes Python's own Py_UNICODE_ISDECIMAL).
using DecimalTest = bool (*)(uint32_t);

class PiiScanner {
 public:
  // words: lowercase ASCII.
  PiiScanner(const std::vector<std::vector<std::string>>& hint_groups, const std::vector<std::string>& words,
             const std::vector<uint32_t>& lower_to_ascii, int64_t margin, DecimalTest is_decimal);

  // Returns the hint bits; windows gets [begin0, end0, begin1, end1, ...].
  template <typename Char>
  uint32_t scan(const Char* text, int64_t n, std::vector<int64_t>& windows) const;

 private:
  struct Hint {
    std::string text;
    uint32_t bit;
    bool ignore_case;
  };
  void add_hint(const std::string& text, uint32_t bit, bool ignore_case);
  template <typename Char>
  static bool matches(const Hint& h, const Char* s, int64_t available);
  template <typename Char>
  uint32_t hints(const Char* s, int64_t n) const;
  template <typename Char>
  void digit_windows(const Char* s, int64_t n, std::vector<int64_t>& windows) const;
  bool is_digit(uint32_t c) const { return c < 128 ? c - '0' < 10u : is_decimal_(c); }

  std::vector<Hint> hints_[128];  // by first character (both cases for the words)
  bool single_[128] = {};         // a one-character hint is this character
  uint64_t pairs_[128 * 128 / 64] = {};  // bit a * 128 + b: some hint starts with a, b
  std::vector<uint32_t> lower_to_ascii_;
  int64_t margin_;
  DecimalTest is_decimal_;
};

}  // namespace text
}  // namespace fastllm
