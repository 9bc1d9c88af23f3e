// MinHash shingling: text -> 64-bit unit (word or character) hashes -> odd 32-bit shingle hashes,
// streamed in batches to the signature kernel. Header-only and `static inline` on purpose: each
// ISA translation unit instantiates the driver with its own `Ops` (separator masks, bit
// flattening, unit hashing, shingle combining, fold kernel); every instantiation computes the same
// integers, and the scalar versions here are the definition.
//
// Units (the boundaries are exactly split_units' in minhash_text.h):
//   whitespace: maximal runs of non-whitespace bytes, hashed as-is;
//   alnum:      maximal runs of ASCII letters/digits or non-ASCII bytes, ASCII-lowercased;
//   chars:      single UTF-8 code points (a lead byte takes its continuation bytes).
//
// Unit hash of bytes u[0..L): split into 8-byte little-endian chunks c_0..c_m, at least two
// (zero-padded; ASCII-lowercased first in alnum mode), h = K0 ^ L, then
//   h = rotl64((h ^ c_t) * K1, 31) for every chunk but the last, and w = (h ^ c_m) * K1,
// so units of up to 16 bytes (nearly all words) hash with two multiplies and no branch.
// Shingle hash of units w_i..w_{i+n-1} (n = ngram, or all units when a text has fewer):
//   x = sum_j w_{i+j} * C_j  (mod 2^64, C_j odd constants),   s = (mix64(x) >> 32) | 1,
// a 32-bit odd number with 31 well-mixed bits (mix64 is a bijection, so distinct x give
// independent-looking s).
//
// Pipeline per segment of kSegment bytes: 64-byte blocks -> separator bit masks -> unit start and
// end offsets (alternating, so one flattened list of boundaries) -> unit hashes -> shingle hashes
// of every full shingle -> fold into the signature. Buffers are bounded whatever the text length.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "cpu/minhash_text.h"

namespace fastllm {
namespace minhash {

constexpr uint64_t kUnitSeed = 0x243F6A8885A308D3ULL;
constexpr uint64_t kUnitMul = 0x9FB21C651E98DF25ULL;
// Text is cut into units this many bytes at a time (a multiple of 64).
constexpr int64_t kSegment = 4096;
// Room for the boundaries of one segment (two per code point in chars mode) plus what SIMD
// flattening may write past the end.
constexpr int64_t kBoundaryRoom = 2 * kSegment + 2 + 64;

// Per-thread buffers reused across documents.
struct ShingleScratch {
  std::vector<uint32_t> bounds;  // unit boundaries of the current segment (start, end, start, ...)
  std::vector<uint64_t> units;   // unit hashes not yet consumed by a full shingle
  std::vector<uint64_t> coef;    // C_0..C_{ngram-1}
  std::vector<uint32_t> shingles;

  void reserve(int ngram) {
    if (bounds.size() < static_cast<size_t>(kBoundaryRoom)) {
      bounds.resize(kBoundaryRoom);
      shingles.resize(kSegment + 16);
    }
    if (units.size() < static_cast<size_t>(kSegment + ngram + 16)) units.resize(kSegment + ngram + 16);
  }
};

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t load_le64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

// The low `bytes` bytes set, for bytes in [0, 8], without a branch.
static inline uint64_t low_bytes_mask(int64_t bytes) {
  const int shift = static_cast<int>(4 * bytes);
  return ((1ULL << shift) << shift) - 1;
}

// ASCII lowercase of the 8 bytes of an alnum unit chunk: its ASCII bytes are letters or digits,
// and OR 0x20 lowercases letters and keeps digits; bytes >= 0x80 are left alone.
static inline uint64_t lower_alnum8(uint64_t c) { return c | ((~c & 0x8080808080808080ULL) >> 2); }

// Unit hash of bytes [p, p + len), any length, reading only those bytes: the definition.
template <bool kLower>
__attribute__((noinline)) static uint64_t unit_hash_slow(const unsigned char* p, int64_t len) {
  const int64_t chunks = len > 16 ? (len + 7) / 8 : 2;
  uint64_t h = kUnitSeed ^ static_cast<uint64_t>(len);
  for (int64_t t = 0; t < chunks; ++t) {
    const int64_t left = len - 8 * t;
    const int64_t bytes = left < 0 ? 0 : (left < 8 ? left : 8);
    uint64_t c = 0;
    for (int64_t k = 0; k < bytes; ++k) c |= static_cast<uint64_t>(p[8 * t + k]) << (8 * k);
    if (kLower) c = lower_alnum8(c) & low_bytes_mask(bytes);
    h = (h ^ c) * kUnitMul;
    if (t + 1 < chunks) h = rotl64(h, 31);
  }
  return h;
}

// Hash of unit bytes s[b, e) (e > b) of a text of n bytes. Units of up to 16 bytes with 16
// readable bytes (all but the text's last few) take a branch-free path.
template <bool kLower>
static inline uint64_t unit_hash(const unsigned char* s, int64_t b, int64_t e, int64_t n) {
  const int64_t len = e - b;
  if (__builtin_expect(len > 16 || b + 16 > n, 0)) return unit_hash_slow<kLower>(s + b, len);
  uint64_t c0 = load_le64(s + b), c1 = load_le64(s + b + 8);
  if (kLower) {
    c0 = lower_alnum8(c0);
    c1 = lower_alnum8(c1);
  }
  c0 &= low_bytes_mask(len < 8 ? len : 8);
  c1 &= low_bytes_mask(len > 8 ? len - 8 : 0);
  const uint64_t h = rotl64(((kUnitSeed ^ static_cast<uint64_t>(len)) ^ c0) * kUnitMul, 31);
  return (h ^ c1) * kUnitMul;
}

static inline uint32_t finish_shingle(uint64_t x) { return static_cast<uint32_t>(mix64(x) >> 32) | 1u; }

static inline void shingle_coefficients(int ngram, std::vector<uint64_t>& coef) {
  if (static_cast<int>(coef.size()) == ngram) return;
  coef.resize(ngram);
  for (int j = 0; j < ngram; ++j) coef[j] = mix64(0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(j + 1)) | 1;
}

// The scalar steps; an ISA's Ops may replace any of them with a faster equal one.
struct ScalarSteps {
  // Separator bits of one block of len (1..64) bytes: bit i set when byte i is not part of a
  // unit (or i >= len).
  static uint64_t whitespace_mask(const unsigned char* p, int64_t len) {
    uint64_t m = len < 64 ? ~0ULL << len : 0;
    for (int64_t i = 0; i < len; ++i) m |= static_cast<uint64_t>(is_space_byte(p[i])) << i;
    return m;
  }
  static uint64_t alnum_mask(const unsigned char* p, int64_t len) {
    uint64_t m = len < 64 ? ~0ULL << len : 0;
    for (int64_t i = 0; i < len; ++i) m |= static_cast<uint64_t>(!is_alnum_byte(p[i])) << i;
    return m;
  }

  // Appends base + (index of each set bit of `bits`) to out[n...], n += popcount; may write up to
  // 8 entries past the new end.
  static void flatten(uint64_t bits, uint32_t base, uint32_t* out, int64_t& n) {
    const int count = __builtin_popcountll(bits);
    uint32_t* o = out + n;
    constexpr uint64_t kTop = 1ULL << 63;  // keeps ctz defined once bits runs out (entry unused)
    for (int k = 0; k < 8; ++k) {
      o[k] = base + static_cast<uint32_t>(__builtin_ctzll(bits | kTop));
      bits &= bits - 1;
    }
    for (int k = 8; k < count; ++k) {
      o[k] = base + static_cast<uint32_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
    }
    n += count;
  }

  // w[k] = hash of unit [base + bounds[2k], base + bounds[2k + 1]) for k < count.
  template <bool kLower>
  static void hash_units(const unsigned char* s, int64_t n, int64_t base, const uint32_t* bounds, int64_t count,
                         uint64_t* w) {
    for (int64_t k = 0; k < count; ++k) w[k] = unit_hash<kLower>(s, base + bounds[2 * k], base + bounds[2 * k + 1], n);
  }

  // out[i] = finish_shingle(sum_j w[i + j] * coef[j]) for i < m.
  static void combine(const uint64_t* w, int64_t m, int k, const uint64_t* coef, uint32_t* out) {
    if (k == 5) {  // the default shingle size, unrolled
      const uint64_t c0 = coef[0], c1 = coef[1], c2 = coef[2], c3 = coef[3], c4 = coef[4];
      for (int64_t i = 0; i < m; ++i)
        out[i] = finish_shingle(w[i] * c0 + w[i + 1] * c1 + w[i + 2] * c2 + w[i + 3] * c3 + w[i + 4] * c4);
      return;
    }
    for (int64_t i = 0; i < m; ++i) {
      uint64_t x = 0;
      for (int j = 0; j < k; ++j) x += w[i + j] * coef[j];
      out[i] = finish_shingle(x);
    }
  }
};

// Accumulates unit hashes and emits the hashes of full shingles; a text with fewer units than
// one shingle gets one shingle of all of them.
template <typename Ops, typename Emit>
class ShingleBuffer {
 public:
  ShingleBuffer(int ngram, ShingleScratch& sc, Emit& emit) : ngram_(ngram), sc_(sc), emit_(emit) {}

  uint64_t* tail() { return sc_.units.data() + count_; }
  void grew(int64_t k) { count_ += k; }

  // Emits every full shingle and keeps the last ngram - 1 units.
  void flush() {
    const int64_t m = count_ - ngram_ + 1;
    if (m <= 0) return;
    uint64_t* w = sc_.units.data();
    Ops::combine(w, m, ngram_, sc_.coef.data(), sc_.shingles.data());
    emit_(sc_.shingles.data(), m);
    emitted_ = true;
    std::memmove(w, w + m, static_cast<size_t>(count_ - m) * sizeof(uint64_t));
    count_ -= m;
  }

  void finish() {
    if (!emitted_ && count_ > 0 && count_ < ngram_) {
      Ops::combine(sc_.units.data(), 1, static_cast<int>(count_), sc_.coef.data(), sc_.shingles.data());
      emit_(sc_.shingles.data(), 1);
      return;
    }
    flush();
  }

 private:
  int ngram_;
  ShingleScratch& sc_;
  Emit& emit_;
  int64_t count_ = 0;
  bool emitted_ = false;
};

template <typename Ops, Units kMode, typename Emit>
static inline void stream_word_shingles(const unsigned char* s, int64_t n, int ngram, ShingleScratch& sc,
                                        Emit& emit) {
  constexpr bool kLower = kMode == Units::alnum;
  ShingleBuffer<Ops, Emit> buffer(ngram, sc, emit);
  uint32_t* bounds = sc.bounds.data();
  int64_t pending = -1;  // start of a unit that continues into the next segment
  uint64_t carry = 0;    // 1 when the previous block ended inside a unit
  for (int64_t seg = 0; seg < n; seg += kSegment) {
    const int64_t seg_end = n - seg < kSegment ? n : seg + kSegment;
    int64_t n_bounds = 0;
    for (int64_t base = seg; base < seg_end; base += 64) {
      const int64_t len = seg_end - base < 64 ? seg_end - base : 64;
      const uint64_t sep = kMode == Units::whitespace ? Ops::whitespace_mask(s + base, len)
                                                       : Ops::alnum_mask(s + base, len);
      const uint64_t unit = ~sep;
      const uint64_t prev = (unit << 1) | carry;
      carry = unit >> 63;
      // Unit starts (unit byte after a separator) and ends (separator after a unit byte).
      Ops::flatten((unit & ~prev) | (sep & prev), static_cast<uint32_t>(base - seg), bounds, n_bounds);
    }
    if (seg_end == n && carry) bounds[n_bounds++] = static_cast<uint32_t>(n - seg);  // the text ends a unit
    const uint32_t* b = bounds;
    if (pending >= 0) {
      if (n_bounds == 0) continue;  // the whole segment is inside one unit
      *buffer.tail() = unit_hash<kLower>(s, pending, seg + b[0], n);
      buffer.grew(1);
      ++b;
      --n_bounds;
      pending = -1;
    }
    const int64_t units = n_bounds / 2;
    Ops::template hash_units<kLower>(s, n, seg, b, units, buffer.tail());
    buffer.grew(units);
    if (n_bounds % 2) pending = seg + b[n_bounds - 1];
    buffer.flush();
  }
  buffer.finish();
}

template <typename Ops, typename Emit>
static inline void stream_char_shingles(const unsigned char* s, int64_t n, int ngram, ShingleScratch& sc,
                                        Emit& emit) {
  ShingleBuffer<Ops, Emit> buffer(ngram, sc, emit);
  uint32_t* bounds = sc.bounds.data();
  for (int64_t seg = 0; seg < n;) {
    const int64_t seg_end = n - seg < kSegment ? n : seg + kSegment;  // code points may cross it
    int64_t n_bounds = 0, i = seg;
    while (i < seg_end) {
      if (i + 8 <= seg_end && (load_le64(s + i) & 0x8080808080808080ULL) == 0) {  // 8 ASCII characters
        for (int t = 0; t < 8; ++t) {
          bounds[n_bounds++] = static_cast<uint32_t>(i + t - seg);
          bounds[n_bounds++] = static_cast<uint32_t>(i + t + 1 - seg);
        }
        i += 8;
        continue;
      }
      const int64_t e = i + utf8_length(s[i]) <= n ? i + utf8_length(s[i]) : n;
      bounds[n_bounds++] = static_cast<uint32_t>(i - seg);
      bounds[n_bounds++] = static_cast<uint32_t>(e - seg);
      i = e;
    }
    Ops::template hash_units<false>(s, n, seg, bounds, n_bounds / 2, buffer.tail());
    buffer.grew(n_bounds / 2);
    buffer.flush();
    seg = i;
  }
  buffer.finish();
}

// The shingle hashes of one text, in text order, to emit(const uint32_t* shingles, int64_t count).
template <typename Ops, typename Emit>
static inline void stream_shingles(std::string_view text, Units mode, int ngram, ShingleScratch& sc, Emit emit) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const int64_t n = static_cast<int64_t>(text.size());
  sc.reserve(ngram);
  shingle_coefficients(ngram, sc.coef);
  switch (mode) {
    case Units::whitespace: stream_word_shingles<Ops, Units::whitespace>(s, n, ngram, sc, emit); break;
    case Units::alnum: stream_word_shingles<Ops, Units::alnum>(s, n, ngram, sc, emit); break;
    case Units::chars: stream_char_shingles<Ops>(s, n, ngram, sc, emit); break;
  }
}

// The per-ISA entry points (see MinhashKernels in minhash.h), given that ISA's Ops.
template <typename Ops>
static inline void signature_of(std::string_view text, Units mode, int ngram, const uint32_t* mults,
                                int num_perm, ShingleScratch& sc, uint32_t* sig) {
  stream_shingles<Ops>(text, mode, ngram, sc, [&](const uint32_t* shingles, int64_t m) {
    Ops::fold(shingles, m, mults, num_perm, sig);
  });
}

template <typename Ops>
static inline void shingles_of(std::string_view text, Units mode, int ngram, ShingleScratch& sc,
                               std::vector<uint32_t>& out) {
  out.clear();
  stream_shingles<Ops>(text, mode, ngram, sc, [&](const uint32_t* shingles, int64_t m) {
    out.insert(out.end(), shingles, shingles + m);
  });
}

}  // namespace minhash
}  // namespace fastllm
