// Word splitting and hashing shared by MinHash shingling, decontamination n-grams and the quality
// statistics. `static inline` on purpose: included by translation units with different -m flags.
//
// Three ways to cut text into units:
//   whitespace: maximal runs of non-whitespace bytes (what Python's str.split() gives on text whose
//               Unicode spaces were normalised to ASCII), hashed as-is;
//   alnum:      maximal runs of ASCII letters/digits or non-ASCII bytes, ASCII-lowercased, so
//               punctuation and case do not matter (near-duplicate and contamination matching);
//   chars:      single Unicode code points (character n-grams).
#pragma once

#include <cstdint>
#include <vector>

namespace fastllm {
namespace minhash {

enum class Units : int { whitespace = 0, alnum = 1, chars = 2 };

struct Unit {
  int64_t begin, end;  // byte offsets in the UTF-8 text
  uint64_t hash;
};

static inline uint64_t mix64(uint64_t x) {  // splitmix64's finaliser: a strong 64-bit bijection
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static inline bool is_space_byte(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static inline bool is_alnum_byte(unsigned char c) {
  return static_cast<unsigned char>((c | 0x20) - 'a') < 26 || static_cast<unsigned char>(c - '0') < 10 ||
         c >= 0x80;
}

static inline unsigned char ascii_lower(unsigned char c) {
  return static_cast<unsigned char>(c - 'A') < 26 ? static_cast<unsigned char>(c | 0x20) : c;
}

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// Hash of bytes [b, e), ASCII-lowercased when `lower`.
static inline uint64_t hash_bytes(const unsigned char* s, int64_t b, int64_t e, bool lower) {
  uint64_t h = kFnvOffset;
  for (int64_t i = b; i < e; ++i) h = (h ^ (lower ? ascii_lower(s[i]) : s[i])) * kFnvPrime;
  return h;
}

static inline int utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // a stray continuation byte counts as one unit
}

static inline void split_units(const char* text, int64_t n, Units mode, std::vector<Unit>& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(text);
  out.clear();
  if (mode == Units::chars) {
    for (int64_t i = 0; i < n;) {
      const int64_t e = i + utf8_length(s[i]) <= n ? i + utf8_length(s[i]) : n;
      out.push_back({i, e, hash_bytes(s, i, e, false)});
      i = e;
    }
    return;
  }
  const bool alnum = mode == Units::alnum;
  int64_t i = 0;
  while (i < n) {
    while (i < n && (alnum ? !is_alnum_byte(s[i]) : is_space_byte(s[i]))) ++i;
    if (i >= n) break;
    const int64_t b = i;
    while (i < n && (alnum ? is_alnum_byte(s[i]) : !is_space_byte(s[i]))) ++i;
    out.push_back({b, i, hash_bytes(s, b, i, alnum)});
  }
}

// Order-sensitive hash of units [0, k): one multiply per unit, one strong mix at the end.
static inline uint64_t ngram_hash(const Unit* u, int k) {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (int j = 0; j < k; ++j) x = (x ^ u[j].hash) * 0xff51afd7ed558ccdULL + 0x632BE59BD9B4E019ULL;
  return mix64(x);
}

}  // namespace minhash
}  // namespace fastllm
