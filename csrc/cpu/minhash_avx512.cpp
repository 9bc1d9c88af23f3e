// AVX-512 MinHash signature kernel: 16 permutations per register, up to 8 registers of running
// minima per pass over the shingles (128 permutations), seeds read from L1.
#include <immintrin.h>

#include "cpu/minhash.h"

namespace fastllm {
namespace minhash {
namespace {

template <int B>
void pass_avx512(const uint32_t* shingles, int64_t n, const uint32_t* seeds, uint32_t* out) {
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0x85ebca6bu));
  const __m512i m2 = _mm512_set1_epi32(static_cast<int>(0xc2b2ae35u));
  __m512i acc[B], seed[B];
  for (int k = 0; k < B; ++k) {
    acc[k] = _mm512_set1_epi32(-1);
    seed[k] = _mm512_loadu_si512(seeds + 16 * k);
  }
  for (int64_t i = 0; i < n; ++i) {
    const __m512i h = _mm512_set1_epi32(static_cast<int>(shingles[i]));
    for (int k = 0; k < B; ++k) {
      __m512i x = _mm512_xor_si512(h, seed[k]);
      x = _mm512_mullo_epi32(x, m1);
      x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 13));
      x = _mm512_mullo_epi32(x, m2);
      x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
      acc[k] = _mm512_min_epu32(acc[k], x);
    }
  }
  for (int k = 0; k < B; ++k) _mm512_storeu_si512(out + 16 * k, acc[k]);
}

}  // namespace

void signature_avx512(const uint32_t* shingles, int64_t n_shingles, const uint32_t* seeds, int num_perm,
                      uint32_t* out) {
  int p = 0;
  for (; p + 128 <= num_perm; p += 128) pass_avx512<8>(shingles, n_shingles, seeds + p, out + p);
  switch ((num_perm - p) / 16) {
    case 7: pass_avx512<7>(shingles, n_shingles, seeds + p, out + p); break;
    case 6: pass_avx512<6>(shingles, n_shingles, seeds + p, out + p); break;
    case 5: pass_avx512<5>(shingles, n_shingles, seeds + p, out + p); break;
    case 4: pass_avx512<4>(shingles, n_shingles, seeds + p, out + p); break;
    case 3: pass_avx512<3>(shingles, n_shingles, seeds + p, out + p); break;
    case 2: pass_avx512<2>(shingles, n_shingles, seeds + p, out + p); break;
    case 1: pass_avx512<1>(shingles, n_shingles, seeds + p, out + p); break;
    default: break;
  }
}

}  // namespace minhash
}  // namespace fastllm
