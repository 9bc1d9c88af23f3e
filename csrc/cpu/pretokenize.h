// Byte-level BPE pre-tokenization without a regex engine: the exact splits of
//
//   llama3 (= cl100k):  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//                       | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   gpt2:               's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm:             HF's Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]
//                       (llama.cpp's "smollm"): every \p{N} character alone, gpt2 on the runs
//                       between them; as one regex (patterns.py): \p{N}|'s|'t|'re|'ve|'m|'ll|'d
//                       | ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+
//
// as `regex.findall` returns them. `next_pretoken(s, i, n)` gives the end of the match that
// starts at byte i: it tries the alternatives in order, with the backtracking each one needs
// resolved by hand (e.g. `\s+(?!\S)` gives back the last white-space character when a
// non-space follows). Letters/numbers/white space come from unicode_tables.h (generated from
// Python's unicodedata). Case-insensitive contractions accept exactly what `regex` accepts:
// s/S/U+017F (long s), t/T, r/R, e/E, v/V, m/M, l/L, d/D.
//
// Input is expected to be valid UTF-8 (Python strings are; files are validated in Python). An
// invalid byte is still handled safely: it decodes as one "other" character of length 1.
// Header-only and `static inline` so the encoder's hot loop inlines it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/unicode_tables.h"

namespace fastllm {
namespace bpe {

enum class Pattern : int { llama3 = 0, gpt2 = 1, smollm = 2 };

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// Classes of the 128 ASCII characters (same values as the generated table).
struct AsciiClasses {
  uint8_t cls[128];
  constexpr AsciiClasses() : cls() {
    for (int c = 0; c < 128; ++c) {
      const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      const bool digit = c >= '0' && c <= '9';
      const bool space = c == ' ' || (c >= 0x09 && c <= 0x0D);
      cls[c] = letter ? kLetter : digit ? kNumber : space ? kSpace : kOther;
    }
  }
};
inline constexpr AsciiClasses kAscii{};

static inline uint8_t unicode_class(uint32_t cp) {
  if (cp >= 0x110000) return kOther;
  const uint32_t block = unicode::kBlockIndex[cp >> 8];
  const uint32_t low = cp & 0xFF;
  return (unicode::kBlockClasses[block * 64 + (low >> 2)] >> ((low & 3) * 2)) & 3;
}

// Decodes the code point at s[i] (i < n). Returns its length in bytes (>= 1); an invalid or
// truncated sequence is one byte of class "other".
static inline uint32_t decode_utf8(const uint8_t* s, size_t i, size_t n, uint32_t* cp) {
  const uint8_t b = s[i];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  uint32_t len, value;
  if ((b & 0xE0) == 0xC0) {
    len = 2, value = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3, value = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4, value = b & 0x07;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  if (i + len > n) {
    *cp = 0xFFFD;
    return 1;
  }
  for (uint32_t k = 1; k < len; ++k) {
    const uint8_t c = s[i + k];
    if ((c & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    value = (value << 6) | (c & 0x3F);
  }
  *cp = value;
  return len;
}

// Class of the character at s[i]; its byte length goes to *len.
static inline uint8_t class_at(const uint8_t* s, size_t i, size_t n, uint32_t* len) {
  const uint8_t b = s[i];
  if (b < 0x80) {
    *len = 1;
    return kAscii.cls[b];
  }
  uint32_t cp;
  *len = decode_utf8(s, i, n, &cp);
  return unicode_class(cp);
}

// The end of a run of ASCII letters starting at i, eight bytes at a time (SWAR): for each byte
// x = (b | 0x20) & 0x7F, x + 0x1F sets bit 7 iff x >= 'a' and x + 0x05 sets it iff x > 'z'; no
// byte carries into the next. Bytes >= 0x80 are excluded by the final ~v.
static inline size_t scan_ascii_letters(const uint8_t* s, size_t i, size_t n) {
  constexpr uint64_t high = 0x8080808080808080ull;
  while (i + 8 <= n) {
    uint64_t v;
    std::memcpy(&v, s + i, 8);
    const uint64_t x = (v | 0x2020202020202020ull) & 0x7F7F7F7F7F7F7F7Full;
    const uint64_t letters = (x + 0x1F1F1F1F1F1F1F1Full) & ~(x + 0x0505050505050505ull) & ~v & high;
    const uint64_t others = ~letters & high;
    if (others) return i + (__builtin_ctzll(others) >> 3);
    i += 8;
  }
  while (i < n && s[i] < 0x80 && kAscii.cls[s[i]] == kLetter) ++i;
  return i;
}

// The end of the run of characters of class `cls` that starts at i.
static inline size_t scan_class(const uint8_t* s, size_t i, size_t n, uint8_t cls) {
  if (cls == kLetter) {
    for (;;) {
      i = scan_ascii_letters(s, i, n);
      if (i >= n || s[i] < 0x80) return i;
      uint32_t len;
      if (class_at(s, i, n, &len) != kLetter) return i;
      i += len;
    }
  }
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) {
      if (kAscii.cls[b] != cls) break;
      ++i;
      continue;
    }
    uint32_t len;
    if (class_at(s, i, n, &len) != cls) break;
    i += len;
  }
  return i;
}

static inline size_t scan_newlines(const uint8_t* s, size_t i, size_t n) {
  while (i < n && (s[i] == '\r' || s[i] == '\n')) ++i;
  return i;
}

static inline bool is_ascii_ci(uint8_t b, char lower) { return (b | 0x20) == static_cast<uint8_t>(lower); }

// Bytes after the apostrophe taken by a contraction (0 if none). `ci`: (?i:...) as in llama3.
static inline size_t contraction_len(const uint8_t* s, size_t n, bool ci) {
  if (n == 0) return 0;
  const uint8_t a = s[0];
  if (!ci) {
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 1;
    if (n >= 2 && ((a == 'r' && s[1] == 'e') || (a == 'v' && s[1] == 'e') || (a == 'l' && s[1] == 'l')))
      return 2;
    return 0;
  }
  if (is_ascii_ci(a, 's') || is_ascii_ci(a, 't') || is_ascii_ci(a, 'm') || is_ascii_ci(a, 'd')) return 1;
  if (a == 0xC5 && n >= 2 && s[1] == 0xBF) return 2;  // U+017F folds to 's'
  if (n >= 2) {
    if ((is_ascii_ci(a, 'r') || is_ascii_ci(a, 'v')) && is_ascii_ci(s[1], 'e')) return 2;
    if (is_ascii_ci(a, 'l') && is_ascii_ci(s[1], 'l')) return 2;
  }
  return 0;
}

// A run of white space starting at i: `\s*[\r\n]+` ends after the last \r/\n of the run;
// otherwise `\s+(?!\S)` keeps all but the last character when something follows, and `\s+`
// takes a single character. `number_ends_run` (smollm): a number after the run ends the text
// the split sees, so the whole run is one pre-token.
static inline size_t whitespace_token(const uint8_t* s, size_t i, size_t n, bool newline_rule,
                                      bool number_ends_run = false) {
  size_t j = i, last_start = i, after_newline = 0;
  uint8_t next = kSpace;
  while (j < n) {
    const uint8_t b = s[j];
    uint32_t len = 1;
    if (b < 0x80) {
      if (kAscii.cls[b] != kSpace) {
        next = kAscii.cls[b];
        break;
      }
      if (b == '\r' || b == '\n') after_newline = j + 1;
    } else if ((next = class_at(s, j, n, &len)) != kSpace) {
      break;
    }
    last_start = j;
    j += len;
  }
  if (newline_rule && after_newline) return after_newline;
  if (j == n || last_start == i || (number_ends_run && next == kNumber)) return j;
  return last_start;
}

// The common case first, with the fewest branches: " word" or "word" in ASCII. For both patterns
// that is a letter run (optionally after one space), as the full rules below would also find.
static inline bool ascii_word_start(const uint8_t* s, size_t i, size_t n, size_t* letters_from) {
  const uint8_t b = s[i];
  if (b == ' ') {
    if (i + 1 < n && s[i + 1] < 0x80 && kAscii.cls[s[i + 1]] == kLetter) {
      *letters_from = i + 2;
      return true;
    }
    return false;
  }
  if (b < 0x80 && kAscii.cls[b] == kLetter) {
    *letters_from = i + 1;
    return true;
  }
  return false;
}

static inline size_t next_llama3(const uint8_t* s, size_t i, size_t n) {
  size_t from;
  if (ascii_word_start(s, i, n, &from)) return scan_class(s, from, n, kLetter);
  const uint8_t b = s[i];
  if (b == '\'') {
    const size_t m = contraction_len(s + i + 1, n - i - 1, true);
    if (m) return i + 1 + m;
  }
  uint32_t l0;
  const uint8_t c0 = class_at(s, i, n, &l0);
  if (c0 == kLetter) return scan_class(s, i + l0, n, kLetter);
  if (c0 == kNumber) {
    size_t j = i + l0;
    for (int k = 1; k < 3 && j < n; ++k) {
      uint32_t len;
      if (class_at(s, j, n, &len) != kNumber) break;
      j += len;
    }
    return j;
  }
  const size_t j = i + l0;
  if (b != '\r' && b != '\n' && j < n) {  // [^\r\n\p{L}\p{N}]?\p{L}+
    uint32_t l1;
    const uint8_t c1 = class_at(s, j, n, &l1);
    if (c1 == kLetter) return scan_class(s, j + l1, n, kLetter);
    if (b == ' ' && c1 == kOther) return scan_newlines(s, scan_class(s, j + l1, n, kOther), n);
  }
  if (c0 == kOther) return scan_newlines(s, scan_class(s, j, n, kOther), n);
  return whitespace_token(s, i, n, true);
}

// gpt2, and with kDigitsAlone smollm: Digits(individual_digits) then gpt2 on what lies between,
// that is the gpt2 rules with \p{N} taken out of them, as if the text ended before each number.
// Only white space notices that end: a run of it before a number is one pre-token (gpt2 gives
// `\s+(?!\S)` all but its last character, or joins a single space to the number with ` ?\p{N}+`).
template <bool kDigitsAlone>
static inline size_t next_gpt2_like(const uint8_t* s, size_t i, size_t n) {
  size_t from;
  if (ascii_word_start(s, i, n, &from)) return scan_class(s, from, n, kLetter);
  const uint8_t b = s[i];
  if (b == '\'') {
    const size_t m = contraction_len(s + i + 1, n - i - 1, false);
    if (m) return i + 1 + m;
  }
  uint32_t l0;
  const uint8_t c0 = class_at(s, i, n, &l0);
  if (kDigitsAlone && c0 == kNumber) return i + l0;
  if (c0 != kSpace) return scan_class(s, i + l0, n, c0);
  if (b == ' ' && i + 1 < n) {  // ` ?\p{L}+`, ` ?\p{N}+` (gpt2 only), ` ?[^\s\p{L}\p{N}]+`
    uint32_t l1;
    const uint8_t c1 = class_at(s, i + 1, n, &l1);
    if (c1 != kSpace && !(kDigitsAlone && c1 == kNumber)) return scan_class(s, i + 1 + l1, n, c1);
  }
  return whitespace_token(s, i, n, false, kDigitsAlone);
}

static inline size_t next_gpt2(const uint8_t* s, size_t i, size_t n) {
  return next_gpt2_like<false>(s, i, n);
}

static inline size_t next_smollm(const uint8_t* s, size_t i, size_t n) {
  return next_gpt2_like<true>(s, i, n);
}

template <Pattern P>
static inline size_t next_pretoken_of(const uint8_t* s, size_t i, size_t n) {
  if constexpr (P == Pattern::llama3) return next_llama3(s, i, n);
  if constexpr (P == Pattern::gpt2) return next_gpt2(s, i, n);
  return next_smollm(s, i, n);
}

// End of the pre-token starting at byte i < n.
static inline size_t next_pretoken(Pattern pattern, const uint8_t* s, size_t i, size_t n) {
  switch (pattern) {
    case Pattern::llama3: return next_llama3(s, i, n);
    case Pattern::gpt2: return next_gpt2(s, i, n);
    default: return next_smollm(s, i, n);
  }
}

// True when a pre-token boundary falls at byte i whatever precedes it, so a text can be cut there
// and pre-tokenized piece by piece with identical results:
//  - s[i-1] is an ASCII letter and s[i] a space: no alternative of any pattern continues a
//    match past a letter into white space;
//  - s[i-1] is '\n' and s[i] starts a letter or number: no alternative matches across that. For
//    gpt2 (and smollm before a letter) the '\n' must also be alone: a longer run of white space
//    ends with `\s+(?!\S)` giving its last character back, which the cut text would not do.
// The patterns are memoryless (no look-behind), so the matches after a boundary do not depend
// on the text before it.
static inline bool is_safe_cut(Pattern pattern, const uint8_t* s, size_t i, size_t n) {
  if (i == 0 || i >= n) return false;
  const uint8_t prev = s[i - 1];
  if (s[i] == ' ') return prev < 0x80 && kAscii.cls[prev] == kLetter;
  if (prev != '\n') return false;
  uint32_t len;
  const uint8_t c = class_at(s, i, n, &len);
  if (c != kLetter && c != kNumber) return false;
  if (pattern == Pattern::llama3 || (pattern == Pattern::smollm && c == kNumber)) return true;
  return i == 1 || (s[i - 2] < 0x80 && kAscii.cls[s[i - 2]] != kSpace);
}

}  // namespace bpe
}  // namespace fastllm
