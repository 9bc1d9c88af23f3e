// AVX2 MinHash signature kernel: 8 permutations per register, 8 registers of running minima per
// pass over the shingles (64 permutations), seeds read from L1.
#include <immintrin.h>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {
namespace {

template <int B>
void pass_avx2(const uint32_t* shingles, int64_t n, const uint32_t* seeds, uint32_t* out) {
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0x85ebca6bu));
  const __m256i m2 = _mm256_set1_epi32(static_cast<int>(0xc2b2ae35u));
  __m256i acc[B];
  for (int k = 0; k < B; ++k) acc[k] = _mm256_set1_epi32(-1);
  for (int64_t i = 0; i < n; ++i) {
    const __m256i h = _mm256_set1_epi32(static_cast<int>(shingles[i]));
    for (int k = 0; k < B; ++k) {
      const __m256i seed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(seeds + 8 * k));
      __m256i x = _mm256_xor_si256(h, seed);
      x = _mm256_mullo_epi32(x, m1);
      x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 13));
      x = _mm256_mullo_epi32(x, m2);
      x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
      acc[k] = _mm256_min_epu32(acc[k], x);
    }
  }
  for (int k = 0; k < B; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * k), acc[k]);
}

}  // namespace

void signature_avx2(const uint32_t* shingles, int64_t n_shingles, const uint32_t* seeds, int num_perm,
                    uint32_t* out) {
  int p = 0;
  for (; p + 64 <= num_perm; p += 64) pass_avx2<8>(shingles, n_shingles, seeds + p, out + p);
  switch ((num_perm - p) / 8) {  // num_perm is a multiple of 16, so 0, 2, 4 or 6 registers remain
    case 6: pass_avx2<6>(shingles, n_shingles, seeds + p, out + p); break;
    case 4: pass_avx2<4>(shingles, n_shingles, seeds + p, out + p); break;
    case 2: pass_avx2<2>(shingles, n_shingles, seeds + p, out + p); break;
    default: break;
  }
}

}  // namespace minhash
}  // namespace fastllm
