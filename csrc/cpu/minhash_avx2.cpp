// AVX2 MinHash: separator masks 32 bytes per compare, unit boundaries flattened 8 bits per table
// lookup, unit hashes 4 at a time (64-bit multiplies from three 32-bit ones), and
// the signature fold with 8 permutations per register, 8 registers of running minima per pass over
// the shingles (64 permutations). Shingle hashes use the scalar code.
#include <immintrin.h>

#include <array>
#include <cstring>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {
namespace {

// x <= limit (unsigned bytes), as 0xFF bytes.
inline __m256i le_epu8(__m256i x, char limit) {
  return _mm256_cmpeq_epi8(_mm256_min_epu8(x, _mm256_set1_epi8(limit)), x);
}

inline uint32_t whitespace32(__m256i v) {
  const __m256i space = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(' '));
  const __m256i control = le_epu8(_mm256_sub_epi8(v, _mm256_set1_epi8('\t')), '\r' - '\t');
  return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_or_si256(space, control)));
}

inline uint32_t alnum_separators32(__m256i v) {
  const __m256i lower = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
  const __m256i letter = le_epu8(_mm256_sub_epi8(lower, _mm256_set1_epi8('a')), 'z' - 'a');
  const __m256i digit = le_epu8(_mm256_sub_epi8(v, _mm256_set1_epi8('0')), '9' - '0');
  const uint32_t alnum = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_or_si256(letter, digit))) |
                         static_cast<uint32_t>(_mm256_movemask_epi8(v));  // bytes >= 0x80
  return ~alnum;
}

template <uint32_t (*Mask32)(__m256i)>
inline uint64_t block_mask(const unsigned char* p, int64_t len) {
  if (len == 64) {
    const uint64_t lo = Mask32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const uint64_t hi = Mask32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
    return lo | (hi << 32);
  }
  alignas(32) unsigned char buf[64] = {};
  std::memcpy(buf, p, static_cast<size_t>(len));
  const uint64_t lo = Mask32(_mm256_load_si256(reinterpret_cast<const __m256i*>(buf)));
  const uint64_t hi = Mask32(_mm256_load_si256(reinterpret_cast<const __m256i*>(buf + 32)));
  return (lo | (hi << 32)) | (~0ULL << len);
}

// Bit positions of every byte value, padded with zeros: kBitIndex[b][0..popcount(b)).
constexpr std::array<std::array<uint8_t, 8>, 256> make_bit_index() {
  std::array<std::array<uint8_t, 8>, 256> table{};
  for (int b = 0; b < 256; ++b) {
    int k = 0;
    for (int i = 0; i < 8; ++i)
      if (b >> i & 1) table[b][k++] = static_cast<uint8_t>(i);
  }
  return table;
}
alignas(64) constexpr std::array<std::array<uint8_t, 8>, 256> kBitIndex = make_bit_index();

inline __m256i set1_u64(uint64_t x) { return _mm256_set1_epi64x(static_cast<long long>(x)); }

// a * b mod 2^64 per lane, b given with its high half b_hi = b >> 32.
inline __m256i mullo64(__m256i a, __m256i b, __m256i b_hi) {
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), _mm256_mul_epu32(a, b_hi));
  return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

// Lanes with the low `bytes` (0..8) bytes kept.
inline __m256i keep_low_bytes(__m256i c, __m256i bytes) {
  const __m256i shift = _mm256_sub_epi64(_mm256_set1_epi64x(64), _mm256_slli_epi64(bytes, 3));
  return _mm256_and_si256(c, _mm256_srlv_epi64(_mm256_set1_epi64x(-1), shift));  // shift 64 gives 0
}

inline __m256i lower_alnum_x4(__m256i c) {
  return _mm256_or_si256(c, _mm256_srli_epi64(_mm256_andnot_si256(c, set1_u64(0x8080808080808080ULL)), 2));
}

template <int B>
void pass_avx2(const uint32_t* shingles, int64_t n, const uint32_t* mults, uint32_t* sig) {
  __m256i acc[B];
  for (int k = 0; k < B; ++k) acc[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sig + 8 * k));
  for (int64_t i = 0; i < n; ++i) {
    const __m256i s = _mm256_set1_epi32(static_cast<int>(shingles[i]));
    for (int k = 0; k < B; ++k) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mults + 8 * k));
      acc[k] = _mm256_min_epu32(acc[k], _mm256_mullo_epi32(s, a));
    }
  }
  for (int k = 0; k < B; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(sig + 8 * k), acc[k]);
}

struct Avx2Ops : ScalarSteps {
  static uint64_t whitespace_mask(const unsigned char* p, int64_t len) { return block_mask<whitespace32>(p, len); }
  static uint64_t alnum_mask(const unsigned char* p, int64_t len) { return block_mask<alnum_separators32>(p, len); }

  // ScalarSteps::flatten, 8 bits per table lookup; writes up to 8 entries past the end.
  static void flatten(uint64_t bits, uint32_t base, uint32_t* out, int64_t& n) {
    uint32_t* o = out + n;
    for (int q = 0; q < 8 && bits; ++q, bits >>= 8) {
      const unsigned byte = static_cast<unsigned>(bits & 0xFF);
      const __m256i index = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kBitIndex[byte].data())));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o),
                          _mm256_add_epi32(index, _mm256_set1_epi32(static_cast<int>(base) + 8 * q)));
      o += __builtin_popcount(byte);
    }
    n = o - out;
  }

  // ScalarSteps::hash_units, 4 units per register (see the AVX-512 version).
  template <bool kLower>
  static void hash_units(const unsigned char* s, int64_t n, int64_t base, const uint32_t* bounds, int64_t count,
                         uint64_t* w) {
    const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i seg = _mm256_set1_epi64x(base), last = _mm256_set1_epi64x(n - 16);
    const __m256i eight = _mm256_set1_epi64x(8), sixteen = _mm256_set1_epi64x(16), zero = _mm256_setzero_si256();
    const __m256i mul = set1_u64(kUnitMul), mul_hi = set1_u64(kUnitMul >> 32), seed = set1_u64(kUnitSeed);
    const auto* base_ptr = reinterpret_cast<const long long*>(s);
    int64_t k = 0;
    for (; k + 4 <= count; k += 4) {
      const __m256i se =
          _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bounds + 2 * k)), split);
      const __m256i start0 = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(se));
      const __m256i start = _mm256_add_epi64(start0, seg);
      const __m256i len = _mm256_sub_epi64(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(se, 1)), start0);
      // fast lanes: len <= 16 and start <= n - 16
      const __m256i slow = _mm256_or_si256(_mm256_cmpgt_epi64(len, sixteen), _mm256_cmpgt_epi64(start, last));
      const int slow_bits = _mm256_movemask_pd(_mm256_castsi256_pd(slow));
      __m256i c0, c1;
      if (__builtin_expect(base + bounds[2 * k + 6] + 16 <= n, 1)) {
        // 16 bytes from every start: units 0 and 2 in one register, 1 and 3 in the other
        const unsigned char* p = s + base;
        const __m256i a = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k]))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 4])), 1);
        const __m256i b = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 2]))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 6])), 1);
        c0 = _mm256_unpacklo_epi64(a, b);
        c1 = _mm256_unpackhi_epi64(a, b);
      } else {
        const __m256i fast = _mm256_xor_si256(slow, _mm256_set1_epi64x(-1));
        c0 = _mm256_mask_i64gather_epi64(zero, base_ptr, start, fast, 1);
        c1 = _mm256_mask_i64gather_epi64(zero, base_ptr + 1, start, fast, 1);
      }
      if (kLower) {
        c0 = lower_alnum_x4(c0);
        c1 = lower_alnum_x4(c1);
      }
      const __m256i over8 = _mm256_cmpgt_epi64(len, eight);
      c0 = keep_low_bytes(c0, _mm256_blendv_epi8(len, eight, over8));
      c1 = keep_low_bytes(c1, _mm256_and_si256(_mm256_sub_epi64(len, eight), over8));
      __m256i h = mullo64(_mm256_xor_si256(_mm256_xor_si256(seed, len), c0), mul, mul_hi);
      h = _mm256_or_si256(_mm256_slli_epi64(h, 31), _mm256_srli_epi64(h, 33));
      h = mullo64(_mm256_xor_si256(h, c1), mul, mul_hi);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + k), h);
      if (__builtin_expect(slow_bits != 0, 0)) {
        for (int l = 0; l < 4; ++l)
          if (slow_bits >> l & 1)
            w[k + l] = unit_hash<kLower>(s, base + bounds[2 * (k + l)], base + bounds[2 * (k + l) + 1], n);
      }
    }
    ScalarSteps::hash_units<kLower>(s, n, base, bounds + 2 * k, count - k, w + k);
  }

  static void fold(const uint32_t* shingles, int64_t n_shingles, const uint32_t* mults, int num_perm,
                   uint32_t* sig) {
    int p = 0;
    for (; p + 64 <= num_perm; p += 64) pass_avx2<8>(shingles, n_shingles, mults + p, sig + p);
    switch ((num_perm - p) / 8) {  // num_perm is a multiple of 16, so 0, 2, 4 or 6 registers remain
      case 6: pass_avx2<6>(shingles, n_shingles, mults + p, sig + p); break;
      case 4: pass_avx2<4>(shingles, n_shingles, mults + p, sig + p); break;
      case 2: pass_avx2<2>(shingles, n_shingles, mults + p, sig + p); break;
      default: break;
    }
  }
};

}  // namespace

const MinhashKernels kernels_avx2 = {Avx2Ops::fold, signature_of<Avx2Ops>, shingles_of<Avx2Ops>};

}  // namespace minhash
}  // namespace fastllm
