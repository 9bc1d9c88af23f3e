// RoPE, AVX2 path: 8 pairs per step, F16C for fp16, integer round-to-nearest-even for bf16.
// Bit-exact with rope_generic.cpp (same operations, no FMA).
#include <immintrin.h>

#include "cpu/rope.h"
#include "cpu/rope_scalar.h"

namespace fastllm {
namespace {

struct F32x8 {
  static inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
};

struct F16x8 {
  static inline __m256 load(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static inline void store(uint16_t* p, __m256 v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

struct BF16x8 {
  static inline __m256 load(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  // Same rounding as fp32_to_bf16: add 0x7FFF + lsb, keep the top half; NaN stays a quiet NaN.
  static inline void store(uint16_t* p, __m256 v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F800000));
    const __m256i top = _mm256_blendv_epi8(_mm256_srli_epi32(rounded, 16), quiet_nan, is_nan);
    // Pack the 8 low halves: packus works per 128-bit lane, so fix the lane order after.
    const __m256i packed = _mm256_packus_epi32(_mm256_and_si256(top, _mm256_set1_epi32(0xFFFF)),
                                               _mm256_setzero_si256());
    const __m256i ordered = _mm256_permute4x64_epi64(packed, 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(ordered));
  }
};

template <typename E, typename V>
void rope_heads_avx2(const void* x, int64_t x_head_stride, void* out, int64_t out_head_stride,
                     int64_t n_heads, const float* cos, const float* sin, int64_t half, float sign) {
  const __m256 vsign = _mm256_set1_ps(sign);
  const int64_t vec_end = half - half % 8;
  for (int64_t i = 0; i < vec_end; i += 8) {
    const __m256 c = _mm256_loadu_ps(cos + i);
    const __m256 s = _mm256_mul_ps(vsign, _mm256_loadu_ps(sin + i));
    for (int64_t h = 0; h < n_heads; ++h) {
      const auto* src = static_cast<const typename E::T*>(x) + h * x_head_stride;
      auto* dst = static_cast<typename E::T*>(out) + h * out_head_stride;
      const __m256 x1 = V::load(src + i), x2 = V::load(src + i + half);
      const __m256 lo = _mm256_sub_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x2, s));
      const __m256 hi = _mm256_add_ps(_mm256_mul_ps(x2, c), _mm256_mul_ps(x1, s));
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

const RopeKernels rope_kernels_avx2 = {rope_heads_avx2<F32, F32x8>, rope_heads_avx2<F16, F16x8>,
                                       rope_heads_avx2<BF16, BF16x8>};

}  // namespace fastllm
