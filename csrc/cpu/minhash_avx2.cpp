// AVX2 MinHash: separator masks 32 bytes per compare, and the signature fold with 8 permutations
// per register, 8 registers of running minima per pass over the shingles (64 permutations).
// Unit and shingle hashes use the scalar code (AVX2 has no 64-bit multiply).
#include <immintrin.h>

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
