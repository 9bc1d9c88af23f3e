// AVX-512 MinHash: separator masks 64 bytes per compare, unit boundaries flattened with
// vpcompressd, unit hashes 8 at a time (gathered chunks, 64-bit multiplies), shingle hashes 8 at
// a time, and the signature fold with 16 permutations per register, up to 8 registers of running
// minima per pass over the shingles (128 permutations), multipliers held in registers.
#include <immintrin.h>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {
namespace {

inline __m512i load_block(const unsigned char* p, int64_t len) {
  return len == 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(~0ULL >> (64 - len), p);
}

inline __m512i set1_u64(uint64_t x) { return _mm512_set1_epi64(static_cast<long long>(x)); }

inline __m512i mix64_x8(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 30));
  x = _mm512_mullo_epi64(x, set1_u64(0xbf58476d1ce4e5b9ULL));
  x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 27));
  x = _mm512_mullo_epi64(x, set1_u64(0x94d049bb133111ebULL));
  return _mm512_xor_si512(x, _mm512_srli_epi64(x, 31));
}

// lower_alnum8 on 8 lanes.
inline __m512i lower_alnum_x8(__m512i c) {
  return _mm512_or_si512(c, _mm512_srli_epi64(_mm512_andnot_si512(c, set1_u64(0x8080808080808080ULL)), 2));
}

// Lanes with the low `bytes` (0..8) bytes kept.
inline __m512i keep_low_bytes(__m512i c, __m512i bytes) {
  const __m512i shift = _mm512_sub_epi64(_mm512_set1_epi64(64), _mm512_slli_epi64(bytes, 3));
  return _mm512_and_si512(c, _mm512_srlv_epi64(_mm512_set1_epi64(-1), shift));  // shift 64 gives 0
}

template <int B>
void pass_avx512(const uint32_t* shingles, int64_t n, const uint32_t* mults, uint32_t* sig) {
  __m512i acc[B], a[B];
  for (int k = 0; k < B; ++k) {
    acc[k] = _mm512_loadu_si512(sig + 16 * k);
    a[k] = _mm512_loadu_si512(mults + 16 * k);
  }
  for (int64_t i = 0; i < n; ++i) {
    const __m512i s = _mm512_set1_epi32(static_cast<int>(shingles[i]));
    for (int k = 0; k < B; ++k) acc[k] = _mm512_min_epu32(acc[k], _mm512_mullo_epi32(s, a[k]));
  }
  for (int k = 0; k < B; ++k) _mm512_storeu_si512(sig + 16 * k, acc[k]);
}

struct Avx512Ops {
  static uint64_t whitespace_mask(const unsigned char* p, int64_t len) {
    const __m512i v = load_block(p, len);
    const uint64_t space = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(' '));
    const uint64_t control =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('\t')), _mm512_set1_epi8('\r' - '\t'));
    return space | control | (len == 64 ? 0 : ~0ULL << len);
  }

  static uint64_t alnum_mask(const unsigned char* p, int64_t len) {
    const __m512i v = load_block(p, len);
    const __m512i lower = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    const uint64_t letter =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(lower, _mm512_set1_epi8('a')), _mm512_set1_epi8('z' - 'a'));
    const uint64_t digit =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('0')), _mm512_set1_epi8('9' - '0'));
    const uint64_t high = _mm512_movepi8_mask(v);  // bytes >= 0x80
    return ~(letter | digit | high) | (len == 64 ? 0 : ~0ULL << len);
  }

  // ScalarSteps::flatten, 16 bit positions per vpcompressd; writes up to 16 entries past the end.
  static void flatten(uint64_t bits, uint32_t base, uint32_t* out, int64_t& n) {
    const __m512i index = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(static_cast<int>(base)));
    uint32_t* o = out + n;
    for (int q = 0; q < 4; ++q) {
      const __mmask16 m = static_cast<__mmask16>(bits >> (16 * q));
      _mm512_storeu_si512(o, _mm512_maskz_compress_epi32(m, _mm512_add_epi32(index, _mm512_set1_epi32(16 * q))));
      o += __builtin_popcount(m);
    }
    n = o - out;
  }

  // ScalarSteps::hash_units, 8 units per register: 16 bytes loaded from each start (gathered, masked,
  // for the last units of a text), lanes with a unit longer than 16 bytes or too close to the
  // text's end redone by the scalar code.
  template <bool kLower>
  static void hash_units(const unsigned char* s, int64_t n, int64_t base, const uint32_t* bounds, int64_t count,
                         uint64_t* w) {
    const __m512i split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m512i seg = _mm512_set1_epi64(base), last = _mm512_set1_epi64(n - 16);
    const __m512i eight = _mm512_set1_epi64(8), sixteen = _mm512_set1_epi64(16), zero = _mm512_setzero_si512();
    const __m512i mul = set1_u64(kUnitMul), seed = set1_u64(kUnitSeed);
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    int64_t k = 0;
    for (; k + 8 <= count; k += 8) {
      const __m512i se = _mm512_permutexvar_epi32(split, _mm512_loadu_si512(bounds + 2 * k));
      const __m512i start = _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(se)), seg);
      const __m512i len = _mm512_sub_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(se, 1)),
                                           _mm512_cvtepu32_epi64(_mm512_castsi512_si256(se)));
      __mmask8 fast = _mm512_cmple_epi64_mask(len, sixteen);
      __m512i c0, c1;
      if (__builtin_expect(base + bounds[2 * k + 14] + 16 <= n, 1)) {
        // 16 bytes from every start: four units per register, then even/odd qwords
        const unsigned char* p = s + base;
        __m512i lo = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k])));
        lo = _mm512_inserti32x4(lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 2])), 1);
        lo = _mm512_inserti32x4(lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 4])), 2);
        lo = _mm512_inserti32x4(lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 6])), 3);
        __m512i hi = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 8])));
        hi = _mm512_inserti32x4(hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 10])), 1);
        hi = _mm512_inserti32x4(hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 12])), 2);
        hi = _mm512_inserti32x4(hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bounds[2 * k + 14])), 3);
        c0 = _mm512_permutex2var_epi64(lo, even, hi);
        c1 = _mm512_permutex2var_epi64(lo, odd, hi);
      } else {
        fast &= _mm512_cmple_epi64_mask(start, last);
        c0 = _mm512_mask_i64gather_epi64(zero, fast, start, s, 1);
        c1 = _mm512_mask_i64gather_epi64(zero, fast, start, s + 8, 1);
      }
      if (kLower) {
        c0 = lower_alnum_x8(c0);
        c1 = lower_alnum_x8(c1);
      }
      c0 = keep_low_bytes(c0, _mm512_min_epi64(len, eight));
      c1 = keep_low_bytes(c1, _mm512_max_epi64(_mm512_sub_epi64(len, eight), zero));
      __m512i h = _mm512_mullo_epi64(_mm512_xor_si512(_mm512_xor_si512(seed, len), c0), mul);
      h = _mm512_mullo_epi64(_mm512_xor_si512(_mm512_rol_epi64(h, 31), c1), mul);
      _mm512_storeu_si512(w + k, h);
      if (__builtin_expect(fast != 0xFF, 0)) {
        for (int l = 0; l < 8; ++l)
          if (!((fast >> l) & 1))
            w[k + l] = unit_hash<kLower>(s, base + bounds[2 * (k + l)], base + bounds[2 * (k + l) + 1], n);
      }
    }
    ScalarSteps::hash_units<kLower>(s, n, base, bounds + 2 * k, count - k, w + k);
  }

  // ScalarSteps::combine, 8 shingles per register.
  static void combine(const uint64_t* w, int64_t m, int k, const uint64_t* coef, uint32_t* out) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1);
    for (; i + 8 <= m; i += 8) {
      __m512i x = _mm512_mullo_epi64(_mm512_loadu_si512(w + i), set1_u64(coef[0]));
      for (int j = 1; j < k; ++j)
        x = _mm512_add_epi64(x, _mm512_mullo_epi64(_mm512_loadu_si512(w + i + j), set1_u64(coef[j])));
      const __m256i hi = _mm512_cvtepi64_epi32(_mm512_srli_epi64(mix64_x8(x), 32));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_or_si256(hi, one));
    }
    ScalarSteps::combine(w + i, m - i, k, coef, out + i);
  }

  static void fold(const uint32_t* shingles, int64_t n_shingles, const uint32_t* mults, int num_perm,
                   uint32_t* sig) {
    int p = 0;
    for (; p + 128 <= num_perm; p += 128) pass_avx512<8>(shingles, n_shingles, mults + p, sig + p);
    switch ((num_perm - p) / 16) {
      case 7: pass_avx512<7>(shingles, n_shingles, mults + p, sig + p); break;
      case 6: pass_avx512<6>(shingles, n_shingles, mults + p, sig + p); break;
      case 5: pass_avx512<5>(shingles, n_shingles, mults + p, sig + p); break;
      case 4: pass_avx512<4>(shingles, n_shingles, mults + p, sig + p); break;
      case 3: pass_avx512<3>(shingles, n_shingles, mults + p, sig + p); break;
      case 2: pass_avx512<2>(shingles, n_shingles, mults + p, sig + p); break;
      case 1: pass_avx512<1>(shingles, n_shingles, mults + p, sig + p); break;
      default: break;
    }
  }
};

}  // namespace

const MinhashKernels kernels_avx512 = {Avx512Ops::fold, signature_of<Avx512Ops>, shingles_of<Avx512Ops>};

}  // namespace minhash
}  // namespace fastllm
