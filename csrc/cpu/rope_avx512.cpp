// RoPE, AVX-512 path: 16 pairs per step. Bit-exact with rope_generic.cpp (same operations, no
// FMA; bf16 rounded with integer ops rather than VCVTNEPS2BF16, which flushes denormals).
#include <immintrin.h>

#include "cpu/rope.h"
#include "cpu/rope_scalar.h"

namespace fastllm {
namespace {

struct F32x16 {
  static inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
};

struct F16x16 {
  static inline __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline void store(uint16_t* p, __m512 v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

struct BF16x16 {
  static inline __m512 load(const uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  // Same rounding as fp32_to_bf16: add 0x7FFF + lsb, keep the top half; NaN stays a quiet NaN.
  static inline void store(uint16_t* p, __m512 v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    const __m512i abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F800000));
    const __m512i top = _mm512_mask_or_epi32(_mm512_srli_epi32(rounded, 16), is_nan, high,
                                             _mm512_set1_epi32(0x40));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(top));
  }
};

template <typename E, typename V>
void rope_heads_avx512(const void* x, int64_t x_head_stride, void* out, int64_t out_head_stride,
                       int64_t n_heads, const float* cos, const float* sin, int64_t half,
                       float sign) {
  const __m512 vsign = _mm512_set1_ps(sign);
  const int64_t vec_end = half - half % 16;
  for (int64_t i = 0; i < vec_end; i += 16) {
    const __m512 c = _mm512_loadu_ps(cos + i);
    const __m512 s = _mm512_mul_ps(vsign, _mm512_loadu_ps(sin + i));
    for (int64_t h = 0; h < n_heads; ++h) {
      const auto* src = static_cast<const typename E::T*>(x) + h * x_head_stride;
      auto* dst = static_cast<typename E::T*>(out) + h * out_head_stride;
      const __m512 x1 = V::load(src + i), x2 = V::load(src + i + half);
      const __m512 lo = _mm512_sub_ps(_mm512_mul_ps(x1, c), _mm512_mul_ps(x2, s));
      const __m512 hi = _mm512_add_ps(_mm512_mul_ps(x2, c), _mm512_mul_ps(x1, s));
      V::store(dst + i, lo);
      V::store(dst + i + half, hi);
    }
  }
  if (vec_end == half) return;
  for (int64_t h = 0; h < n_heads; ++h) {
    rope_scalar_span<E>(static_cast<const typename E::T*>(x) + h * x_head_stride,
                        static_cast<typename E::T*>(out) + h * out_head_stride, cos, sin, vec_end,
                        half, sign);
  }
}

}  // namespace

const RopeKernels rope_kernels_avx512 = {rope_heads_avx512<F32, F32x16>,
                                         rope_heads_avx512<F16, F16x16>,
                                         rope_heads_avx512<BF16, BF16x16>};

}  // namespace fastllm
